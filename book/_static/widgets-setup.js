// Loaded on pages with saved ipywidgets, after require.js and before the widget manager
// (embed-amd.js), which the book serves from _static/vendor/ instead of a CDN.
(function () {
  "use strict";

  // The widget manager finds its fonts next to the URL of its AMD module; by default
  // RequireJS would put that URL next to the page, so tell it where the module really is.
  var vendor = document.currentScript.src.replace(/[^/]*$/, "") + "vendor/";
  window.require.config({
    paths: { "@jupyter-widgets/html-manager/dist": vendor + "html-manager/dist" },
  });

  // ipywidgets typesets widget labels with the MathJax 2 API, MathJax.Hub.Queue(["Typeset",
  // MathJax.Hub, element]); the book loads MathJax 3. Translate, once MathJax 3 has loaded
  // (it is deferred; DOMContentLoaded comes after it, and this listener runs before the
  // widget manager's because this script comes first).
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub || !mathjax.startup) return;
    mathjax.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
            mathjax.startup.promise.then(function () {
              return mathjax.typesetPromise([job[2]]);
            });
          }
        });
      },
    };
  });
})();
