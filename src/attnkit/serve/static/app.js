/*
 * The attnkit server's page. A text run: paste a text, see the label with its probabilities and the text with
 * its tokens highlighted per explanation method, plus the head view for models with self-attention. An image
 * run: drop (or pick) an image, see the label, the probabilities and a heatmap per method over the image the
 * model saw (its unit boxes shaded by score; a switch picks the method).
 * Token highlighting, the legend, the head/model views and the colour scale come from the shared renderer
 * (window.attnkit, the package's explain/assets/attnkit-viz.js, served at assets/). Text from the server is
 * inserted with textContent only, never as HTML. No network access beyond this server.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var model = null;
  // Image runs: the chosen file, the object URL of its preview, and which request is the latest.
  var chosen = null;
  var previewUrl = null;
  var latest = 0;
  // Heatmap opacity at full intensity: the image stays visible under the strongest boxes.
  var MAX_ALPHA = 0.7;
  // Canvas size the model's image is scaled to (whole multiples of its pixels, so boxes stay sharp).
  var VIEW_PX = 336;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  async function call(path, body) {
    var response;
    var headers = {};
    var key = $("api-key").value.trim();
    if (key) headers["X-API-Key"] = key;  // servers started with an API key answer 401 without it
    var form = typeof FormData !== "undefined" && body instanceof FormData;
    if (body !== undefined && !form) headers["Content-Type"] = "application/json";  // the browser sets multipart's
    try {
      response = await fetch(path, body === undefined ? { headers: headers } : {
        method: "POST", headers: headers, body: form ? body : JSON.stringify(body),
      });
    } catch (err) {
      throw new Error("could not reach the server (" + err.message + ")");
    }
    var data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;  // e.g. an HTML error page from a proxy
    }
    if (response.status === 401) {
      $("key-option").hidden = false;
      throw new Error("this server needs an API key: enter it above (HTTP 401)");
    }
    if (!response.ok) {
      var detail = data && (data.detail || data.error);
      throw new Error((detail ? String(detail) : "no details") + " (HTTP " + response.status + ")");
    }
    if (data === null) throw new Error("the server's answer was not JSON");
    return data;
  }

  // -- the page ----------------------------------------------------------------------------------------------

  function showPrediction(prediction) {
    $("label").textContent = prediction.label;
    var box = $("probabilities");
    box.replaceChildren();
    Object.keys(prediction.probabilities).forEach(function (name) {
      var p = prediction.probabilities[name];
      var bar = el("span", { class: "bar" });
      bar.style.width = (p * 20).toFixed(2) + "rem";
      box.appendChild(el("div", { class: "prob" + (name === prediction.label ? " top" : ""), "data-label": name }, [
        el("span", { class: "name", text: name }), bar, el("span", { class: "value", text: (100 * p).toFixed(1) + "%" }),
      ]));
    });
  }

  // Each method's highlighted text with its colour legend (the shared renderer's, as on the offline pages).
  function showExplanation(exp) {
    var viz = window.attnkit;
    var box = $("explanation");
    box.replaceChildren();
    exp.methods.forEach(function (method) {
      var body = el("div");
      box.appendChild(el("div", { class: "method", "data-method": method }, [
        el("h3", { text: method }), body, viz.renderLegend(exp, method),
      ]));
      viz.renderTokens(body, exp, method);
    });
    var layers = $("layers-view");
    layers.replaceChildren();
    if (exp.layers) viz.renderLayerViews(layers, exp);
  }

  function clearPrediction() {
    $("result").hidden = true;
    $("label").textContent = "";
    $("probabilities").replaceChildren();
  }

  function clearExplanation() {
    $("explanation").replaceChildren();
    $("layers-view").replaceChildren();
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
    document.body.setAttribute("data-state", "error");
  }

  // Nothing of an earlier text stays on screen: the result is cleared before each request, and a failed step
  // leaves only what this text got (the label when only the explanation failed) and says which step failed.
  async function submit(event) {
    event.preventDefault();
    var text = $("text").value;
    var methods = Array.prototype.map.call(document.querySelectorAll("#methods input:checked"), function (b) { return b.value; });
    $("error").hidden = true;
    $("error").textContent = "";
    clearPrediction();
    clearExplanation();
    document.body.setAttribute("data-state", "busy");
    $("submit").disabled = true;
    try {
      try {
        showPrediction(await call("predict", { text: text }));
      } catch (err) {
        clearPrediction();
        showError("Classifying failed: " + err.message);
        return;
      }
      $("result").hidden = false;
      if (methods.length) {
        var layers = model.self_attention && $("layers").checked;
        try {
          showExplanation(await call("explain", { text: text, methods: methods, layers: layers }));
        } catch (err) {
          clearExplanation();
          showError("Explaining failed (the label shown is this text's): " + err.message);
          return;
        }
      }
      document.body.setAttribute("data-state", "done");
    } finally {
      $("submit").disabled = false;
    }
  }

  // -- image runs ------------------------------------------------------------------------------------------

  function loadImage(src) {
    return new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("the explanation's image could not be shown")); };
      img.src = src;
    });
  }

  // The image as the model saw it, scaled up, with each unit box shaded by its score on the shared scale:
  // the colour of attnkit-viz.js's intensityColor at full strength, the opacity growing with the intensity.
  function drawHeatmap(canvas, exp, method, img) {
    var viz = window.attnkit;
    var w = exp.image.width, h = exp.image.height;
    var zoom = Math.max(1, Math.floor(VIEW_PX / Math.max(w, h)));
    canvas.width = w * zoom;
    canvas.height = h * zoom;
    var ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, 0, 0, w * zoom, h * zoom);
    var scale = exp.scale[method];
    var shaded = 0;
    exp.units.forEach(function (unit) {
      var t = viz.intensityOf(scale, unit.scores[method]);
      if (!t) return;
      var rgb = viz.intensityColor(t < 0 ? -1 : 1, scale.kind);
      ctx.fillStyle = "rgba(" + rgb[0] + ", " + rgb[1] + ", " + rgb[2] + ", " + (MAX_ALPHA * Math.abs(t)).toFixed(3) + ")";
      var b = unit.box;
      ctx.fillRect(b[0] * zoom, b[1] * zoom, (b[2] - b[0]) * zoom, (b[3] - b[1]) * zoom);
      shaded += 1;
    });
    canvas.setAttribute("data-method", method);
    canvas.setAttribute("data-shaded", String(shaded));
  }

  // The legend of the shared scale (the explanation's own `scale`: the same numbers as attnkit.explain.scale).
  function imageLegend(exp, method) {
    var scale = exp.scale[method];
    var unit = (exp.grid && exp.grid.unit_name) || "unit";
    var note;
    if (scale.kind === "ratio") {
      note = scale.max_ratio === null || scale.concentration === null ? "all weights are 0"
        : "no colour at or below uniform (1/" + scale.units + "); peak ×" + String(Number(scale.max_ratio.toPrecision(3))) +
          " of uniform, concentration " + scale.concentration.toFixed(2) + " (0 = uniform, 1 = one " + unit + ")";
    } else if (scale.kind === "diverging") {
      note = "red: supports " + exp.target + " · blue: against it · scaled to this image's max |score|";
    } else {
      note = "scaled to this image's max score";
    }
    var stops = scale.kind === "diverging" ? [[-1, "diverging"], [0, "diverging"], [1, "diverging"]] : [[0, "sequential"], [1, "sequential"]];
    var bar = el("span", { class: "ak-legend-bar" });
    bar.style.background = "linear-gradient(to right, " + stops.map(function (s) {
      var c = window.attnkit.intensityColor(s[0], s[1]);
      return "rgb(" + c.join(", ") + ")";
    }).join(", ") + ")";
    return el("div", { class: "ak-legend ak-legend-" + scale.kind, "data-kind": scale.kind }, [
      el("span", { class: "ak-legend-end ak-legend-low", text: scale.low }), bar,
      el("span", { class: "ak-legend-end ak-legend-high", text: scale.high }),
      el("span", { class: "ak-legend-note", text: note }),
    ]);
  }

  // One heatmap with a method switch (one button per method) and that method's legend.
  async function showImageExplanation(exp) {
    var img = await loadImage("data:image/png;base64," + exp.image.png);
    var box = $("explanation");
    box.replaceChildren();
    var canvas = el("canvas", { class: "heatmap", id: "heatmap", role: "img" });
    var legend = el("div", { class: "heatmap-legend" });
    var buttons = el("div", { class: "method-switch", role: "group", "aria-label": "heatmap of" });
    var caption = el("p", { class: "heatmap-controls" });
    var readout = el("p", { class: "heatmap-controls heatmap-readout", text: "point at a box to read its score" });
    var current = exp.methods[0];
    canvas.addEventListener("mousemove", function (e) {  // the score of the box under the pointer
      var rect = canvas.getBoundingClientRect();
      var x = (e.clientX - rect.left) * exp.image.width / rect.width;
      var y = (e.clientY - rect.top) * exp.image.height / rect.height;
      var unit = exp.units.filter(function (u) { return x >= u.box[0] && x < u.box[2] && y >= u.box[1] && y < u.box[3]; })[0];
      if (unit) readout.textContent = exp.grid.unit_name + " " + unit.index + " (row " + unit.row + ", col " + unit.col + "): " + current + " " + unit.scores[current];
    });
    function select(method) {
      current = method;
      drawHeatmap(canvas, exp, method, img);
      canvas.setAttribute("aria-label", method + " heatmap over the " + exp.image.width + "x" + exp.image.height + " image the model saw");
      Array.prototype.forEach.call(buttons.children, function (b) {
        b.setAttribute("aria-pressed", String(b.getAttribute("data-method") === method));
      });
      legend.replaceChildren(imageLegend(exp, method));
      caption.textContent = method + " over " + exp.grid.rows + " × " + exp.grid.cols + " " + exp.grid.unit_name +
        "s of " + exp.grid.unit_size + " px, explaining " + exp.target + " (the image as the model saw it: " +
        exp.image.width + " × " + exp.image.height + ")";
    }
    exp.methods.forEach(function (method) {
      var button = el("button", { type: "button", "data-method": method, "aria-pressed": "false", text: method });
      button.addEventListener("click", function () { select(method); });
      buttons.appendChild(button);
    });
    box.appendChild(el("div", { class: "method image-explanation", "data-methods": exp.methods.join(" ") }, [
      buttons, el("div", { class: "image-view" }, [canvas, el("div", {}, [legend, caption, readout])]),
    ]));
    select(exp.methods[0]);
  }

  function choose(file) {
    chosen = file || null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = chosen ? URL.createObjectURL(chosen) : null;
    $("preview").hidden = !chosen;
    if (previewUrl) $("preview").src = previewUrl; else $("preview").removeAttribute("src");
    if (chosen) $("form").requestSubmit();
  }

  function imageForm(file, methods) {
    var form = new FormData();
    form.append("file", file, file.name || "image");
    (methods || []).forEach(function (m) { form.append("method", m); });
    return form;
  }

  // As for texts, nothing of an earlier image stays on screen; a newer image's request supersedes this one.
  async function submitImage(event) {
    event.preventDefault();
    var mine = ++latest;
    var file = chosen;
    var methods = Array.prototype.map.call(document.querySelectorAll("#methods input:checked"), function (b) { return b.value; });
    $("error").hidden = true;
    $("error").textContent = "";
    clearPrediction();
    clearExplanation();
    if (!file) {
      showError("Choose an image first: drop one on the box or pick a file");
      return;
    }
    document.body.setAttribute("data-state", "busy");
    $("submit").disabled = true;
    try {
      var prediction;
      try {
        prediction = (await call("predict", imageForm(file))).predictions[0];
      } catch (err) {
        if (mine !== latest) return;
        clearPrediction();
        showError("Classifying failed: " + err.message);
        return;
      }
      if (mine !== latest) return;
      showPrediction(prediction);
      $("result").hidden = false;
      if (methods.length) {
        try {
          var explained = (await call("explain", imageForm(file, methods))).explanations[0];
          if (mine !== latest) return;
          await showImageExplanation(explained);
        } catch (err) {
          if (mine !== latest) return;
          clearExplanation();
          showError("Explaining failed (the label shown is this image's): " + err.message);
          return;
        }
      }
      document.body.setAttribute("data-state", "done");
    } finally {
      if (mine === latest) $("submit").disabled = false;
    }
  }

  function setUpImages() {
    $("text-input").hidden = true;
    $("text").required = false;
    $("image-input").hidden = false;
    $("methods-legend").textContent = "Heatmaps by";
    $("file").addEventListener("change", function () { choose($("file").files[0]); });
    var drop = $("drop");
    ["dragenter", "dragover"].forEach(function (type) {
      drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
    drop.addEventListener("drop", function (e) {
      e.preventDefault();
      drop.classList.remove("over");
      var files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) choose(files[0]);
    });
    $("form").addEventListener("submit", submitImage);
  }

  async function init() {
    try {
      model = await call("model");
    } catch (err) {
      $("model-info").textContent = "could not load the model: " + err.message;
      if (!$("key-option").hidden) {  // retry once a key is entered
        $("api-key").addEventListener("change", init, { once: true });
      }
      return;
    }
    var acc = model.metrics && model.metrics.test ? ", test accuracy " + (100 * model.metrics.test.accuracy).toFixed(1) + "%" : "";
    $("model-info").textContent = model.model + " (" + model.backend + " backend), labels: " + model.labels.join(", ") + acc;
    model.methods.forEach(function (m) {
      var box = el("input", { type: "checkbox", value: m, id: "method-" + m });
      box.checked = m === "attention";
      $("methods").appendChild(el("label", {}, [box, " " + m]));
    });
    var images = model.modality === "image";
    $("layers-option").hidden = !model.self_attention || images;
    if (!window.attnkit) {
      $("model-info").textContent += " (the explanation renderer assets/attnkit-viz.js did not load)";
      return;
    }
    if (images) setUpImages(); else $("form").addEventListener("submit", submit);
    document.body.setAttribute("data-state", "ready");
  }

  init();
})();
