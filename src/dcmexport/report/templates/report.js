// dcmexport report: filtering, the image viewer and the GIF fallback for cines.
// Plain script, no modules (file:// pages cannot load them), no network access of any kind.
(function () {
  "use strict";

  function setupFilter() {
    var text = document.getElementById("filter-text");
    var modality = document.getElementById("filter-modality");
    var count = document.getElementById("filter-count");
    if (!text) { return; }
    var form = text.form;
    if (form) { form.addEventListener("submit", function (event) { event.preventDefault(); }); }
    var rows = Array.prototype.slice.call(document.querySelectorAll("[data-filter-row]"));
    function apply() {
      var query = text.value.trim().toLowerCase();
      var wanted = modality ? modality.value : "";
      var shown = 0;
      rows.forEach(function (row) {
        var words = " " + (row.getAttribute("data-modality") || "") + " ";
        var ok = (!query || (row.getAttribute("data-text") || "").indexOf(query) !== -1) &&
          (!wanted || words.indexOf(" " + wanted + " ") !== -1);
        row.hidden = !ok;
        if (ok) { shown += 1; }
      });
      if (count) { count.textContent = shown + " of " + rows.length + " shown"; }
    }
    text.addEventListener("input", apply);
    if (modality) { modality.addEventListener("change", apply); }
    apply();
  }

  function setupViewer() {
    var dialog = document.getElementById("viewer");
    if (!dialog || typeof dialog.showModal !== "function") { return; }  // links still work
    var caption = dialog.querySelector(".caption");
    document.addEventListener("click", function (event) {
      var link = event.target.closest ? event.target.closest("a.enlarge") : null;
      if (!link) { return; }
      event.preventDefault();
      var old = dialog.querySelector("img");
      if (old) { old.remove(); }
      var image = document.createElement("img");
      image.src = link.getAttribute("href");
      image.alt = link.getAttribute("data-caption") || "";
      dialog.insertBefore(image, caption);
      caption.textContent = image.alt;
      dialog.showModal();
    });
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) { dialog.close(); }
    });
  }

  function setupCineFallback() {
    var videos = document.querySelectorAll("video[data-gif]");
    Array.prototype.forEach.call(videos, function (video) {
      var done = false;
      function fallback() {
        if (done) { return; }
        done = true;
        var image = document.createElement("img");
        image.src = video.getAttribute("data-gif");
        image.alt = (video.getAttribute("aria-label") || "cine") + " (animated GIF)";
        video.replaceWith(image);
      }
      var sources = video.querySelectorAll("source");
      var last = sources[sources.length - 1];
      if (last) { last.addEventListener("error", fallback); }
      video.addEventListener("error", fallback);
      if (last && video.canPlayType && !video.canPlayType(last.getAttribute("type") || "")) { fallback(); }
    });
  }

  setupFilter();
  setupViewer();
  setupCineFallback();
}());
