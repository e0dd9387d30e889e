// The book's additions to the theme's behaviour (loaded by _config.yml's html_js_files).

// 1. Display maths wider than the column scrolls sideways in its own box (custom.css). A phone
//    draws no scroll bar there, so the box is marked on each side that has more formula to
//    see: class vae-more-right or vae-more-left, which custom.css turns into a fade at that
//    edge. Runs once MathJax has typeset the page, and again when a box scrolls or resizes.
(function () {
  "use strict";

  function mark(box) {
    var hidden = box.scrollWidth - box.clientWidth;
    box.classList.toggle("vae-more-right", hidden > 1 && box.scrollLeft < hidden - 1);
    box.classList.toggle("vae-more-left", hidden > 1 && box.scrollLeft > 1);
  }

  function setUp() {
    // a box's width changes with the window, the sidebar, or a font that loads late
    var resized = window.ResizeObserver
      ? new ResizeObserver(function (entries) {
          entries.forEach(function (entry) { mark(entry.target); });
        })
      : null;
    document.querySelectorAll("div.math mjx-container").forEach(function (box) {
      mark(box);
      box.addEventListener("scroll", function () { mark(box); }, { passive: true });
      if (resized) resized.observe(box);
    });
  }

  window.addEventListener("load", function () {
    var startup = window.MathJax && window.MathJax.startup;
    if (startup && startup.promise) startup.promise.then(setUp);
    else setUp();
  });
})();

// 2. Below 992 px the sidebars open as modal dialogs (the ☰ and contents buttons). A link in
//    them to a section of the page moves the page behind the dialog but left the dialog open
//    over it: close the dialog once the browser has followed the link.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("dialog[id$='-sidebar-modal'] a[href]");
    if (!link) return;
    var dialog = link.closest("dialog");
    var url = new URL(link.href, window.location.href);
    var here = url.origin === window.location.origin && url.pathname === window.location.pathname;
    if (dialog.open && here && url.hash) {
      window.setTimeout(function () { dialog.close(); }, 0);
    }
  });
})();
