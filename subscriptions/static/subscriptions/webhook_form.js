/* Niceties of the webhook settings page; every flow also works as a plain form post. */
"use strict";
(function () {
  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function checkedValue(name) {
    const input = document.querySelector("input[name=" + name + "]:checked");
    return input ? input.value : "";
  }

  // Basic authentication: the username and password rows only when "Yes" is chosen.
  function basicAuthToggle() {
    const enabled = checkedValue("basic_auth_enabled") === "True";
    document.querySelectorAll(".field-basic_auth_username, .field-basic_auth_password")
      .forEach(function (row) { row.hidden = !enabled; });
  }

  function profileValue() {
    const select = document.querySelector("select[name=profile]");
    return select ? select.value : "standard";
  }

  // The preview's answer as {body} or {error}. A request refused before the view (text that
  // cannot be stored, a body too large) is answered with a page, not JSON: its words.
  function previewAnswer(response) {
    const type = response.headers.get("Content-Type") || "";
    if (type.indexOf("application/json") === 0) { return response.json(); }
    return response.text().then(function (text) {
      const page = new DOMParser().parseFromString(text, "text/html");
      const words = page.body ? page.body.textContent.replace(/\s+/g, " ").trim() : "";
      if (!words) { throw new Error(String(response.status)); }
      return {error: words};
    });
  }

  function bodyEditor(editor) {
    const textarea = editor.querySelector("textarea");
    const presets = JSON.parse(document.getElementById(editor.dataset.presets).textContent);
    const picker = editor.querySelector(".webhook-body-preset");
    const previewType = editor.querySelector(".webhook-body-preview-type");
    const output = editor.querySelector(".webhook-body-preview-output");
    const vendorNote = editor.querySelector(".webhook-body-vendor");

    // A vendor profile sends the vendor's own body: the template is not used (nor posted).
    function profileFollow() {
      const select = document.querySelector("select[name=profile]");
      const vendor = profileValue() !== "standard";
      textarea.disabled = vendor && textarea.value.trim() === "";
      picker.disabled = vendor;
      if (vendorNote) {
        vendorNote.hidden = !vendor;
        // The sentence comes translated from the page (data-template), the profile's name here.
        vendorNote.textContent = vendor && select
          ? vendorNote.dataset.template.replace(
            "{profile}", select.options[select.selectedIndex].text) : "";
      }
    }
    const profileSelect = document.querySelector("select[name=profile]");
    if (profileSelect) { profileSelect.addEventListener("change", profileFollow); }
    profileFollow();

    picker.addEventListener("change", function () {
      if (picker.value === "standard") {
        textarea.value = "";
      } else if (presets[picker.value]) {
        textarea.value = presets[picker.value][checkedValue("content_type") || "json"];
      }
      picker.value = "";
    });

    // Preview with a topic the webhook receives: the first ticked type, else the first match of
    // the first pattern.
    function defaultPreviewType() {
      const ticked = document.querySelector(".webhook-topics input[type=checkbox]:checked");
      if (ticked) { return ticked.value; }
      const patterns = document.querySelector(".webhook-topic-patterns input");
      const first = patterns && patterns.value.trim().split(/[\s,]+/)[0];
      if (first) {
        const expression = new RegExp("^" + first.replace(/[.+^${}()|\\]/g, "\\$&")
          .replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
        const match = Array.from(previewType.options).find(function (o) {
          return expression.test(o.value);
        });
        if (match) { return match.value; }
      }
      return "";
    }

    editor.querySelector(".webhook-body-preview-button").addEventListener("click", function () {
      const data = new FormData();
      data.append("body_template", textarea.disabled ? "" : textarea.value);
      data.append("profile", profileValue());
      data.append("content_type", checkedValue("content_type") || "json");
      data.append("event_type", previewType.value);
      const school = document.getElementById("id_school");
      data.append("school", school ? school.value : editor.dataset.school);
      fetch(editor.dataset.previewUrl, {
        method: "POST",
        body: data,
        headers: {"X-CSRFToken": csrfToken(), "Accept": "application/json"},
        credentials: "same-origin",
      }).then(previewAnswer).catch(function () {
        return {error: editor.dataset.failed};
      }).then(function (answer) {
        output.hidden = false;
        output.classList.toggle("errornote", Boolean(answer.error));
        output.textContent = answer.error || answer.body;
      });
    });

    document.querySelectorAll(".webhook-topics input").forEach(function (input) {
      input.addEventListener("change", function () {
        const type = defaultPreviewType();
        if (type) { previewType.value = type; }
      });
    });
    const type = defaultPreviewType();
    if (type) { previewType.value = type; }
  }

  // The signing secret: masked until revealed (fetched on demand, never in the page), copyable.
  function secretField(field) {
    const code = field.querySelector(".webhook-secret-value");
    const reveal = field.querySelector(".webhook-secret-reveal");
    const copy = field.querySelector(".webhook-secret-copy");
    let secret = null;

    function load() {
      if (secret) { return Promise.resolve(secret); }
      return fetch(field.dataset.url, {
        method: "POST",
        headers: {"X-CSRFToken": csrfToken(), "Accept": "application/json"},
        credentials: "same-origin",
      }).then(function (response) { return response.json(); }).then(function (answer) {
        if (!answer.secret) { throw new Error(answer.error || String(answer)); }
        secret = answer.secret;
        return secret;
      });
    }
    // The secret page says what went wrong (an unreadable secret, no permission) in words.
    function secretPage() { window.location.href = reveal.href; }

    reveal.addEventListener("click", function (event) {
      event.preventDefault();
      if (code.dataset.revealed) {
        code.textContent = code.dataset.masked;
        delete code.dataset.revealed;
        reveal.textContent = field.dataset.reveal;
        return;
      }
      load().then(function (value) {
        code.dataset.masked = code.textContent;
        code.textContent = value;
        code.dataset.revealed = "1";
        reveal.textContent = field.dataset.hide;
      }).catch(secretPage);
    });

    copy.hidden = false;
    copy.addEventListener("click", function (event) {
      event.preventDefault();
      load().then(function (value) {
        return navigator.clipboard.writeText(value);
      }).then(function () {
        copy.textContent = field.dataset.copied;
        setTimeout(function () { copy.textContent = field.dataset.copy; }, 2000);
      }, secretPage);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input[name=basic_auth_enabled]").forEach(function (input) {
      input.addEventListener("change", basicAuthToggle);
    });
    if (document.querySelector("input[name=basic_auth_enabled]")) { basicAuthToggle(); }
    document.querySelectorAll(".webhook-body-editor").forEach(bodyEditor);
    document.querySelectorAll(".webhook-secret[data-url]").forEach(secretField);
  });
})();

// Topics: a search box that shows the matching event types and opens their groups; each
// group's summary counts its ticked types.
(function () {
  "use strict";
  function groupCount(group) {
    const boxes = group.querySelectorAll("input[type=checkbox]");
    const ticked = group.querySelectorAll("input[type=checkbox]:checked").length;
    const count = group.querySelector(".webhook-topic-count");
    if (count && count.dataset.template === undefined) {
      count.dataset.template = count.textContent.replace(/^\s*\d+/, "{n}");
    }
    if (count) { count.textContent = count.dataset.template.replace("{n}", String(ticked)); }
    return boxes.length;
  }
  function setUp() {
    document.querySelectorAll(".webhook-topics").forEach(function (topics) {
      const search = topics.querySelector(".webhook-topic-search input");
      const groups = topics.querySelectorAll(".webhook-topic-group");
      groups.forEach(function (group) {
        groupCount(group);
        group.addEventListener("change", function () { groupCount(group); });
      });
      if (!search) { return; }
      search.addEventListener("input", function () {
        const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
        groups.forEach(function (group) {
          let shown = 0;
          group.querySelectorAll("label").forEach(function (label) {
            const text = label.textContent.toLowerCase();
            const match = words.every(function (word) { return text.includes(word); });
            label.hidden = !match;
            if (match) { shown += 1; }
          });
          group.hidden = shown === 0;
          group.open = words.length > 0 ? shown > 0 : group.open;
        });
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
