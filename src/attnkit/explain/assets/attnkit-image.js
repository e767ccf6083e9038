/* attnkit-image.js: hovering a unit box of an image explanation (render_images.py) writes its score beside the
   pictures and outlines the same box in the overlay and the heatmap. The page works without it: switching
   methods is plain CSS and every box has an SVG <title> tooltip. No network, no dependencies. */
(function () {
  "use strict";
  function views(root) {
    return Array.prototype.slice.call(root.querySelectorAll(".ak-img-view"));
  }
  function wire(view) {
    var readout = view.querySelector(".ak-img-readout");
    var rects = Array.prototype.slice.call(view.querySelectorAll(".ak-unit"));
    function mark(index, on) {
      rects.forEach(function (rect) {
        if (rect.getAttribute("data-i") === index) {
          rect.classList.toggle("ak-hover", on);
        }
      });
    }
    rects.forEach(function (rect) {
      rect.addEventListener("mouseenter", function () {
        mark(rect.getAttribute("data-i"), true);
        if (readout) {
          readout.textContent = rect.getAttribute("data-label");
        }
      });
      rect.addEventListener("mouseleave", function () {
        mark(rect.getAttribute("data-i"), false);
      });
    });
  }
  function boot() {
    views(document).forEach(wire);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
