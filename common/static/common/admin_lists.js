// Lists on a phone: each cell carries its column's name, shown before the value (see
// admin_lists.css), so a row reads as a card in the admin's language.
"use strict";
(function () {
  function label() {
    const table = document.getElementById("result_list");
    if (!table) { return; }
    const names = Array.from(table.querySelectorAll("thead th")).map(function (th) {
      const text = th.querySelector(".text");
      return (text || th).textContent.trim();
    });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.from(row.children).forEach(function (cell, index) {
        if (names[index]) { cell.dataset.label = names[index]; }
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", label);
  } else {
    label();
  }
})();
