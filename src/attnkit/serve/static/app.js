/*
 * The attnkit server's page. A text run: paste a text, see the label with its probabilities and the text with
 * its tokens highlighted per explanation method, plus the head view for models with self-attention. An image
 * run: drop (or pick) an image, see the label, the probabilities and a heatmap per method over the image the
 * model saw (its unit boxes shaded by score; a switch picks the method). An audio run: drop, pick or record a
 * clip (MediaRecorder, converted to a WAV in the page), play it, see the label, the probabilities and the log-mel
 * spectrogram with each unit's time span shaded by the method's score, a strip of the scores under it, and a
 * cursor that follows the player.
 * Token highlighting, the legend, the head/model views and the colour scale come from the shared renderer
 * (window.attnkit, the package's explain/assets/attnkit-viz.js, served at assets/). Text from the server is
 * inserted with textContent only, never as HTML. No network access beyond this server.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var model = null;
  // Image and audio runs: the chosen file, the object URL of its preview, and which request is the latest.
  var chosen = null;
  var previewUrl = null;
  var latest = 0;
  // Heatmap opacity at full intensity: the image (or spectrogram) stays visible under the strongest units.
  var MAX_ALPHA = 0.7;
  // Canvas size the model's image is scaled to (whole multiples of its pixels, so boxes stay sharp).
  var VIEW_PX = 336;
  // Audio runs: the spectrogram's size on the page, the score strip's height, and the view the player drives.
  var SPECTROGRAM_W = 720;
  var SPECTROGRAM_H = 160;
  var STRIP_H = 28;
  var audioView = null;
  // Recording: the MediaRecorder while it runs, its stream, and the timer that stops it at the run's limit.
  var recording = null;

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
    audioView = null;
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
  function unitLegend(exp, method, unit, item) {
    var scale = exp.scale[method];
    var note;
    if (scale.kind === "ratio") {
      note = scale.max_ratio === null || scale.concentration === null ? "all weights are 0"
        : "no colour at or below uniform (1/" + scale.units + "); peak ×" + String(Number(scale.max_ratio.toPrecision(3))) +
          " of uniform, concentration " + scale.concentration.toFixed(2) + " (0 = uniform, 1 = one " + unit + ")";
    } else if (scale.kind === "diverging") {
      note = "red: supports " + exp.target + " · blue: against it · scaled to this " + item + "'s max |score|";
    } else {
      note = "scaled to this " + item + "'s max score";
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
      legend.replaceChildren(unitLegend(exp, method, exp.grid.unit_name || "unit", "image"));
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

  // -- audio runs --------------------------------------------------------------------------------------------

  // The spectrogram as the model's front end saw the clip, each unit's time span shaded by its score on the
  // shared scale (as the image heatmap: the colour at full strength, the opacity growing with the intensity), a
  // strip of the scores' colours under it, and the player's position as a cursor.
  function showAudioExplanation(exp, img) {
    var viz = window.attnkit;
    var box = $("explanation");
    box.replaceChildren();
    var spec = exp.spectrogram;
    var lastEnd = exp.units.length ? exp.units[exp.units.length - 1].end : 0;
    var extent = Math.max(lastEnd, spec.frames * spec.hop_seconds, exp.audio.duration) || 1;
    var canvas = el("canvas", { class: "spectrogram", id: "spectrogram", role: "img" });
    var strip = el("canvas", { class: "strip", id: "strip", role: "img" });
    canvas.width = strip.width = SPECTROGRAM_W;
    canvas.height = SPECTROGRAM_H;
    strip.height = STRIP_H;
    var legend = el("div", { class: "heatmap-legend" });
    var buttons = el("div", { class: "method-switch", role: "group", "aria-label": "scores of" });
    var caption = el("p", { class: "heatmap-controls" });
    var readout = el("p", { class: "heatmap-controls heatmap-readout", text: "point at the spectrogram to read a " + exp.unit.name + "'s score; click to play from there" });
    var current = exp.methods[0];
    var player = $("player");

    function xOf(seconds) { return seconds / extent * SPECTROGRAM_W; }
    function unitAt(seconds) {
      return exp.units.filter(function (u) { return seconds >= u.start && seconds < u.end; })[0] || null;
    }
    function span(ctx, unit, height) {
      var x0 = Math.floor(xOf(unit.start)), x1 = Math.max(x0 + 1, Math.floor(xOf(unit.end)));
      ctx.fillRect(x0, 0, x1 - x0, height);
    }
    function draw() {
      var scale = exp.scale[current];
      var ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = spec.frames > SPECTROGRAM_W;  // pixelated when zoomed in, smooth when shrunk
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, SPECTROGRAM_W, SPECTROGRAM_H);
      ctx.drawImage(img, 0, 0, xOf(spec.frames * spec.hop_seconds), SPECTROGRAM_H);
      var bar = strip.getContext("2d");
      bar.fillStyle = "#fff";
      bar.fillRect(0, 0, SPECTROGRAM_W, STRIP_H);
      var shaded = 0;
      exp.units.forEach(function (unit) {
        var t = viz.intensityOf(scale, unit.scores[current]);
        var full = viz.intensityColor(t < 0 ? -1 : 1, scale.kind);
        var rgb = viz.intensityColor(t, scale.kind);
        bar.fillStyle = "rgb(" + rgb.join(", ") + ")";
        span(bar, unit, STRIP_H);
        if (!t) return;
        ctx.fillStyle = "rgba(" + full.join(", ") + ", " + (MAX_ALPHA * Math.abs(t)).toFixed(3) + ")";
        span(ctx, unit, SPECTROGRAM_H);
        shaded += 1;
      });
      var playing = player.src && !isNaN(player.currentTime) && (player.currentTime > 0 || !player.paused);
      if (playing) {  // the cursor, and the unit under it outlined
        var x = Math.min(SPECTROGRAM_W - 1, Math.floor(xOf(player.currentTime)));
        ctx.fillStyle = "#fff";
        ctx.fillRect(x, 0, 2, SPECTROGRAM_H);
        var now = unitAt(player.currentTime);
        if (now) {
          ctx.strokeStyle = "#fff";
          ctx.strokeRect(Math.floor(xOf(now.start)) + 0.5, 0.5, Math.max(1, Math.floor(xOf(now.end) - xOf(now.start)) - 1), SPECTROGRAM_H - 1);
        }
        canvas.setAttribute("data-playing-unit", now ? String(now.index) : "");
      }
      canvas.setAttribute("data-method", current);
      canvas.setAttribute("data-shaded", String(shaded));
      strip.setAttribute("data-method", current);
      strip.setAttribute("data-units", String(exp.units.length));
    }
    function select(method) {
      current = method;
      draw();
      canvas.setAttribute("aria-label", method + " over the log-mel spectrogram of the recording (" + exp.audio.duration.toFixed(2) + " s)");
      strip.setAttribute("aria-label", method + " score of each " + exp.unit.name);
      Array.prototype.forEach.call(buttons.children, function (b) {
        b.setAttribute("aria-pressed", String(b.getAttribute("data-method") === method));
      });
      legend.replaceChildren(unitLegend(exp, method, exp.unit.name, "recording"));
      var ms = Math.round(exp.unit.seconds * 1000);
      caption.textContent = method + " over " + exp.units.length + " " + exp.unit.name + "s of " + ms + " ms" +
        (exp.unit.stack_frames > 1 ? " (" + exp.unit.stack_frames + " frames each)" : "") + ", explaining " +
        exp.target + " (log-mel spectrogram, " + spec.db_low.toFixed(1) + " to " + spec.db_high.toFixed(1) + " dB; " +
        exp.audio.duration.toFixed(2) + " s)";
    }
    function pointed(e, seek) {
      var rect = e.target.getBoundingClientRect();
      var seconds = (e.clientX - rect.left) / rect.width * extent;
      var unit = unitAt(seconds);
      if (unit) {
        readout.textContent = exp.unit.name + " " + unit.index + " (" + unit.start.toFixed(2) + "–" +
          unit.end.toFixed(2) + " s): " + current + " " + unit.scores[current];
      }
      if (seek && player.src) {
        player.currentTime = Math.min(seconds, exp.audio.duration);
        draw();
      }
    }
    [canvas, strip].forEach(function (c) {
      c.addEventListener("mousemove", function (e) { pointed(e, false); });
      c.addEventListener("click", function (e) { pointed(e, true); });
    });
    exp.methods.forEach(function (method) {
      var button = el("button", { type: "button", "data-method": method, "aria-pressed": "false", text: method });
      button.addEventListener("click", function () { select(method); });
      buttons.appendChild(button);
    });
    box.appendChild(el("div", { class: "method audio-explanation", "data-methods": exp.methods.join(" ") }, [
      buttons, el("div", { class: "audio-view" }, [canvas, strip, legend, caption, readout]),
    ]));
    select(current);
    audioView = { redraw: draw };
  }

  // Follow the player: redraw the cursor while it plays (every frame) and after a seek.
  function followPlayer() {
    var player = $("player");
    function tick() {
      if (!audioView) return;
      audioView.redraw();
      if (!player.paused && !player.ended) window.requestAnimationFrame(tick);
    }
    ["play", "seeked", "timeupdate", "ended"].forEach(function (type) {
      player.addEventListener(type, tick);
    });
  }

  // A mono 16-bit PCM WAV of an AudioBuffer: its channels averaged, at its own sample rate.
  function wavOf(buffer) {
    var length = buffer.length, rate = buffer.sampleRate, channels = buffer.numberOfChannels;
    var view = new DataView(new ArrayBuffer(44 + 2 * length));
    function text(at, s) { for (var i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); }
    text(0, "RIFF"); view.setUint32(4, 36 + 2 * length, true); text(8, "WAVE");
    text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
    view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * length, true);
    var data = [];
    for (var c = 0; c < channels; c++) data.push(buffer.getChannelData(c));
    for (var i = 0; i < length; i++) {
      var sum = 0;
      for (c = 0; c < channels; c++) sum += data[c][i];
      var v = Math.max(-1, Math.min(1, sum / channels));
      view.setInt16(44 + 2 * i, v < 0 ? Math.round(v * 32768) : Math.round(v * 32767), true);
    }
    return new Blob([view.buffer], { type: "audio/wav" });
  }

  // What the recorder gave (WebM/Opus in Chromium, Ogg/Opus in Firefox) as a WAV the server decodes.
  async function recordedWav(blob) {
    var bytes = await blob.arrayBuffer();
    var Context = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    var decoded = await new Context(1, 1, 48000).decodeAudioData(bytes);  // resampled to 48 kHz, the usual rate
    return wavOf(decoded);
  }

  function setRecordStatus(text) { $("record-status").textContent = text; }

  async function startRecording() {
    var stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      setRecordStatus("no microphone: " + err.message);
      return;
    }
    var recorder = new MediaRecorder(stream);
    var chunks = [];
    var limit = Math.max(0.5, model.audio.max_seconds - 0.25);  // the run refuses longer clips (413)
    var started = Date.now();
    recording = { recorder: recorder, stream: stream };
    recorder.addEventListener("dataavailable", function (e) { if (e.data && e.data.size) chunks.push(e.data); });
    recorder.addEventListener("stop", async function () {
      clearInterval(recording.ticker);
      stream.getTracks().forEach(function (track) { track.stop(); });
      recording = null;
      $("record").setAttribute("aria-pressed", "false");
      $("record").textContent = "● Record";
      try {
        var wav = await recordedWav(new Blob(chunks, { type: recorder.mimeType }));
        setRecordStatus("recorded " + ((Date.now() - started) / 1000).toFixed(1) + " s");
        choose(new File([wav], "recording.wav", { type: "audio/wav" }));
      } catch (err) {
        setRecordStatus("the recording could not be read: " + err.message);
      }
    });
    recorder.start();
    recording.ticker = setInterval(function () {
      var seconds = (Date.now() - started) / 1000;
      setRecordStatus("recording " + seconds.toFixed(1) + " s (stops at " + limit.toFixed(1) + " s)");
      if (seconds >= limit && recorder.state === "recording") recorder.stop();
    }, 100);
    $("record").setAttribute("aria-pressed", "true");
    $("record").textContent = "■ Stop";
    setRecordStatus("recording…");
  }

  function setUpRecording() {
    var button = $("record");
    var can = window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia &&
      typeof MediaRecorder !== "undefined";
    if (!can) {
      button.disabled = true;
      button.title = "recording needs a browser with MediaRecorder and the page served over https or from localhost";
      return;
    }
    button.addEventListener("click", function () {
      if (recording) recording.recorder.stop(); else startRecording();
    });
  }

  // -- image and audio runs: one file at a time -----------------------------------------------------------

  // `file` from the picker, a drop or the recorder (then the picker is cleared: it no longer names the clip).
  function choose(file, fromPicker) {
    chosen = file || null;
    if (!fromPicker) $(model.modality === "audio" ? "audio-file" : "file").value = "";
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = chosen ? URL.createObjectURL(chosen) : null;
    var preview = $(model.modality === "audio" ? "player" : "preview");
    preview.hidden = !chosen;
    if (previewUrl) preview.src = previewUrl; else preview.removeAttribute("src");
    if (chosen) $("form").requestSubmit();
  }

  function fileForm(file, methods) {
    var form = new FormData();
    form.append("file", file, file.name || (model.modality === "audio" ? "recording" : "image"));
    (methods || []).forEach(function (m) { form.append("method", m); });
    return form;
  }

  async function showFileExplanation(exp) {
    if (model.modality === "audio") {
      showAudioExplanation(exp, await loadImage("data:image/png;base64," + exp.spectrogram.png));
    } else {
      await showImageExplanation(exp);
    }
  }

  // As for texts, nothing of an earlier file stays on screen; a newer file's request supersedes this one.
  async function submitFile(event) {
    event.preventDefault();
    var mine = ++latest;
    var file = chosen;
    var noun = model.modality === "audio" ? "recording" : "image";
    var methods = Array.prototype.map.call(document.querySelectorAll("#methods input:checked"), function (b) { return b.value; });
    $("error").hidden = true;
    $("error").textContent = "";
    clearPrediction();
    clearExplanation();
    if (!file) {
      showError(model.modality === "audio" ? "Choose a recording first: drop one on the box, pick a file or record one"
        : "Choose an image first: drop one on the box or pick a file");
      return;
    }
    document.body.setAttribute("data-state", "busy");
    $("submit").disabled = true;
    try {
      var prediction;
      try {
        prediction = (await call("predict", fileForm(file))).predictions[0];
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
          var explained = (await call("explain", fileForm(file, methods))).explanations[0];
          if (mine !== latest) return;
          await showFileExplanation(explained);
        } catch (err) {
          if (mine !== latest) return;
          clearExplanation();
          showError("Explaining failed (the label shown is this " + noun + "'s): " + err.message);
          return;
        }
      }
      document.body.setAttribute("data-state", "done");
    } finally {
      if (mine === latest) $("submit").disabled = false;
    }
  }

  function setUpDrop(drop, input) {
    input.addEventListener("change", function () { choose(input.files[0], true); });
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
  }

  function setUpFiles(audio) {
    $("text-input").hidden = true;
    $("text").required = false;
    $(audio ? "audio-input" : "image-input").hidden = false;
    $("methods-legend").textContent = audio ? "Highlight frames by" : "Heatmaps by";
    setUpDrop($(audio ? "audio-drop" : "drop"), $(audio ? "audio-file" : "file"));
    if (audio) {
      setUpRecording();
      followPlayer();
    }
    $("form").addEventListener("submit", submitFile);
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
    var files = model.modality === "image" || model.modality === "audio";
    $("layers-option").hidden = !model.self_attention || files;
    if (!window.attnkit) {
      $("model-info").textContent += " (the explanation renderer assets/attnkit-viz.js did not load)";
      return;
    }
    if (files) setUpFiles(model.modality === "audio"); else $("form").addEventListener("submit", submit);
    document.body.setAttribute("data-state", "ready");
  }

  init();
})();
