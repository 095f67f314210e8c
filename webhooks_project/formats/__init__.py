"""Django's date formats, with one change per language: a date and time is shown with seconds
and the time zone named (``T``), as the admin's own pages show them (``common.admin_display``),
so that one page never mixes two formats. Everything else comes from Django's locales."""
