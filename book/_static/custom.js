// The book's additions to the theme's behaviour (loaded by _config.yml's html_js_files).

// 1. Display maths wider than the column scrolls sideways in its own box (custom.css), and so
//    do wide tables and, on a phone, printed outputs. A phone draws no scroll bar there, so
//    the box is marked on each side that has more to see: class vae-more-right or
//    vae-more-left, which custom.css turns into a fade at that edge. Runs once MathJax has
//    typeset the page, and again when a box scrolls or resizes.
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
    // display maths, and (custom.css) tables and printed outputs that scroll sideways
    var boxes = "div.math mjx-container, .pst-scrollable-table-container, div.cell_output pre";
    document.querySelectorAll(boxes).forEach(function (box) {
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

// 3. Search results quote the text around the match from the page's HTML, where MathJax has
//    not run: a formula showed as its TeX source, "\(\mathrm{KL}(q\,\|\,p_\theta(z\mid x))\)".
//    Sphinx's searchtools.js makes the quote with Search.htmlToText; before it does, each
//    formula is replaced by a plain-text reading of its TeX ("KL(q ‖ p_θ(z | x))").
(function () {
  "use strict";

  var SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", zeta: "ζ",
    eta: "η", theta: "θ", kappa: "κ", lambda: "λ", mu: "μ", nu: "ν", xi: "ξ", pi: "π",
    rho: "ρ", sigma: "σ", tau: "τ", phi: "φ", varphi: "φ", chi: "χ", psi: "ψ", omega: "ω",
    Gamma: "Γ", Delta: "Δ", Theta: "Θ", Lambda: "Λ", Sigma: "Σ", Phi: "Φ", Psi: "Ψ", Omega: "Ω",
    mid: " | ", "|": " ‖ ", Vert: "‖", lVert: "‖", rVert: "‖", vert: "|", lvert: "|", rvert: "|",
    le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠", neq: "≠", approx: "≈", sim: "~",
    propto: "∝", in: "∈", infty: "∞", sum: "∑", prod: "∏", int: "∫", nabla: "∇",
    partial: "∂", cdot: "·", times: "×", to: "→", rightarrow: "→", leftarrow: "←",
    log: "log", exp: "exp", min: "min", max: "max", quad: " ", qquad: " "
  };

  function plain(tex) {
    return tex
      .replace(/^\s*(\\\(|\\\[|\$\$?)|(\\\)|\\\]|\$\$?)\s*$/g, "")
      .replace(/\\([A-Za-z]+|\|)/g, function (all, name) {
        return Object.prototype.hasOwnProperty.call(SYMBOLS, name) ? SYMBOLS[name] : "";
      })
      .replace(/\\[,;:! ]/g, " ")
      .replace(/[{}]/g, "")
      .replace(/\s+/g, " ")
      .trim();
  }

  document.addEventListener("DOMContentLoaded", function () {
    // searchtools.js declares it with const: a global name, not a property of window
    var search = typeof Search !== "undefined" ? Search : null;  // eslint-disable-line no-undef
    if (!search || typeof search.htmlToText !== "function") return;
    var htmlToText = search.htmlToText;
    search.htmlToText = function (htmlString, anchor) {
      var doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll("span.math, div.math").forEach(function (el) {
        el.textContent = " " + plain(el.textContent) + " ";
      });
      return htmlToText(doc.documentElement.outerHTML, anchor);
    };
  });
})();

/* A figure opens at full size when tapped or clicked (A11): a phone shrinks a 1100-px plot to a
   third, with its axis labels at 3–5 px; the image itself, opened on its own, can be zoomed.
   Outputs and {glue:figure}s are plain <img>s (Sphinx links only images it scaled itself). */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var zh = /^zh/i.test(document.documentElement.lang || "");
    var title = zh ? "点击以原始尺寸打开此图" : "Open this figure at full size";
    document.querySelectorAll("article img[src*='_images/']").forEach(function (img) {
      if (img.closest("a, .vae-explorer, .jupyter-widgets")) return;
      var link = document.createElement("a");
      link.href = img.getAttribute("src");
      link.className = "vae-figure-link";
      link.title = title;
      img.parentNode.insertBefore(link, img);
      link.appendChild(img);
    });
  });
})();

/* sphinx-togglebutton labels its buttons "Toggle hidden content" in its own JavaScript, which
   no translation catalog reaches: the Chinese edition relabels them once they exist (its
   DOMContentLoaded handler has run by the time this timeout fires). */
(function () {
  "use strict";
  if (!/^zh/i.test(document.documentElement.lang || "")) return;
  document.addEventListener("DOMContentLoaded", function () {
    setTimeout(function () {
      document.querySelectorAll("button.toggle-button[aria-label]").forEach(function (button) {
        button.setAttribute("aria-label", "显示或隐藏内容");
      });
    }, 0);
  });
})();
