// Small progressive enhancements for the server-rendered dashboard; every page works without this file.
"use strict";
(function () {
  function onReady(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  // What-if: show the destination site only for a move.
  function wireWhatIf() {
    var op = document.getElementById("op");
    var to = document.getElementById("to-site-field");
    if (!op || !to) { return; }
    var sync = function () { to.classList.toggle("hidden", op.value !== "move"); };
    op.addEventListener("change", sync);
    sync();
  }

  // Click a column header to sort a table marked "sortable" (numbers by value, text alphabetically).
  function cellValue(row, i) {
    var cell = row.cells[i];
    var text = cell ? (cell.getAttribute("data-v") || cell.textContent || "").trim() : "";
    var m = text.replace(/,/g, "").match(/^(-?[\d.]+)\s*([kMGTPE%]?)/);
    if (!m) { return text.toLowerCase(); }
    var scale = { "": 1, "%": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 }[m[2]] || 1;
    return parseFloat(m[1]) * scale;
  }
  function wireSort() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      var heads = table.tHead ? table.tHead.rows[0].cells : [];
      Array.prototype.forEach.call(heads, function (th, i) {
        th.style.cursor = "pointer";
        th.addEventListener("click", function () {
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          var asc = th.getAttribute("data-sort") !== "asc";
          rows.sort(function (a, b) {
            var x = cellValue(a, i), y = cellValue(b, i);
            if (x === y) { return 0; }
            return (x < y ? -1 : 1) * (asc ? 1 : -1);
          });
          rows.forEach(function (r) { body.appendChild(r); });
          th.setAttribute("data-sort", asc ? "asc" : "desc");
        });
      });
    });
  }

  // Resolve forms: ask once before a decision that is written to the audit trail.
  function wireResolve() {
    var forms = document.querySelectorAll("form.resolve");
    Array.prototype.forEach.call(forms, function (f) {
      f.addEventListener("submit", function () {
        var btn = f.querySelector("button[type=submit]");
        if (btn) { btn.disabled = true; btn.textContent = "Resolving…"; }
      });
    });
  }

  // Register and filing forms post once: disable the button while the server records the change.
  function wireOnce() {
    var forms = document.querySelectorAll("form.set-control, form.file-deadline, form.evidence-form");
    Array.prototype.forEach.call(forms, function (f) {
      f.addEventListener("submit", function () {
        var btn = f.querySelector("button[type=submit]");
        if (btn) { btn.disabled = true; btn.textContent = "Saving…"; }
      });
    });
  }

  // A refused form's page is the answer to a POST: put its page's GET address in its place in the history, so that
  // Back (after the corrected form's redirect) and reload show that page instead of asking to resubmit the form.
  function replacePostEntry() {
    var page = document.querySelector('meta[name="veu-page"]');
    if (!page || !window.history || !history.replaceState) { return; }
    try { history.replaceState(null, "", page.content); } catch (e) { /* the page still works; only Back differs */ }
  }

  onReady(function () { replacePostEntry(); wireWhatIf(); wireSort(); wireResolve(); wireOnce(); });
})();
