// The demo page: draw (pointer events: mouse, finger, pen) or drop an image; each change is sent
// as PNG to /api/predict, and the answer drawn: the digit, the softmax as bars, the 28x28 input,
// the first-layer filters and every convolution's maps before and after pooling.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const $ = (id) => document.getElementById(id);
let drawing = false, last = null, dirty = false, busy = false;
let sent = null, label = null;  // the last file answered, and the correction saved for it

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  $("digit").textContent = "?";
  for (const id of ["received", "filters", "layers", "latency"]) $(id).replaceChildren();
  drawBars(null);
  showMessage("");
  forget();
}

// "Wrong? It's a ...": the file the answer was for, saved under the right digit in data/yours/.
// Undo works until the next drawing.
function forget() {
  sent = null;
  label = null;
  $("wrong").hidden = true;
  $("saved").hidden = true;
}

async function correct(digit) {
  const reply = await fetch(`api/yours?digit=${digit}`, { method: "POST", body: sent });
  const result = await reply.json();
  if (!reply.ok) return showMessage(result.error);
  label = result;
  $("saved-text").textContent = result.was === digit
    ? `Already among your digits as a ${digit}: ${result.saved}`
    : `Saved as a ${digit}: ${result.saved}`;
  $("saved").hidden = false;
  document.body.dataset.saved = result.saved;
}

async function undo() {
  if (!label) return;
  const was = label.was === null ? "" : `&was=${label.was}`;
  await fetch(`api/yours/undo?digit=${label.digit}&id=${label.id}${was}`, { method: "POST" });
  $("saved-text").textContent = `Taken back: ${label.saved}`;
  $("undo").hidden = true;
  label = null;
  document.body.dataset.saved = "";
}

function at(event) {  // pointer position in the pad's own pixels, whatever its size on screen
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

function stroke(from, to, pressure) {
  ctx.strokeStyle = "#fff";
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = 18 * (pressure > 0 && pressure !== 0.5 ? 0.6 + pressure * 0.8 : 1);
  ctx.beginPath();
  ctx.moveTo(...from);
  ctx.lineTo(...to);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  pad.setPointerCapture(e.pointerId);
  drawing = true;
  last = at(e);
  stroke(last, last, e.pressure);
  changed();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const here = at(e);
  stroke(last, here, e.pressure);
  last = here;
  changed();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => { drawing = false; });
}

// One request at a time: changes made while one is out are sent when it is back.
function changed() {
  dirty = true;
  if (!busy) sendPad();
}

function sendPad() {
  dirty = false;
  forget();
  const t0 = performance.now();
  send(padPNG(), "the drawing", t0);
}

// The pad as a PNG file, at once: `toBlob` waits for an idle moment of the page, up to a second
// in a busy (or headless) browser.
function padPNG() {
  const bytes = atob(pad.toDataURL("image/png").split(",")[1]);
  return new Blob([Uint8Array.from(bytes, (c) => c.charCodeAt(0))], { type: "image/png" });
}

async function send(body, name, t0) {
  busy = true;
  document.body.dataset.busy = "true";  // until the last change has its answer (tests wait on it)
  try {
    const reply = await fetch("api/predict?name=" + encodeURIComponent(name),
                              { method: "POST", body });
    const result = await reply.json();
    if (!reply.ok) showMessage(result.error);
    else {
      show(result, performance.now() - t0);
      sent = body;
      $("wrong").hidden = false;
      $("undo").hidden = false;
    }
  } catch (err) {
    showMessage("The demo server does not answer (" + err.message + "): is `make demo` running?");
  } finally {
    busy = false;
    if (dirty) sendPad();
    else document.body.dataset.busy = "false";
  }
}

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function drawBars(probabilities) {
  const bars = $("bars");
  bars.replaceChildren();
  const best = probabilities ? probabilities.indexOf(Math.max(...probabilities)) : -1;
  for (let d = 0; d < 10; d++) {
    const p = probabilities ? probabilities[d] : 0;
    const li = document.createElement("li");
    li.dataset.digit = d;
    li.dataset.p = p;
    if (d === best) li.className = "best";
    li.innerHTML = `<span>${d}</span><span class="track"><span class="bar"></span></span>` +
                   `<span class="p">${probabilities ? (100 * p).toFixed(1) + "%" : ""}</span>`;
    li.querySelector(".bar").style.width = (100 * p) + "%";
    bars.append(li);
  }
}

// uint8 maps (C, H, W), base64, as one small grey canvas each, `scale` screen pixels per pixel.
function mapCanvases(maps, scale) {
  const [c, h, w] = maps.shape;
  const bytes = Uint8Array.from(atob(maps.data), (ch) => ch.charCodeAt(0));
  const out = [];
  for (let i = 0; i < c; i++) {
    const canvas = document.createElement("canvas");
    canvas.className = "map";
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = w * scale + "px";
    canvas.style.height = h * scale + "px";
    const image = canvas.getContext("2d").createImageData(w, h);
    for (let j = 0; j < h * w; j++) {
      const v = bytes[i * h * w + j];
      image.data.set([v, v, v, 255], 4 * j);
    }
    canvas.getContext("2d").putImageData(image, 0, 0);
    out.push(canvas);
  }
  return out;
}

function pct(p) {
  return (100 * p).toFixed(1) + "%";
}

function scaleFor(size) {  // bigger maps drawn smaller, so that 64 of them fit
  return Math.max(2, Math.min(8, Math.round(56 / size)));
}

function show(result, ms) {
  if (result.not_sure) {  // said plainly, with the two likeliest digits
    const [first, second] = [...result.probabilities.keys()]
      .sort((a, b) => result.probabilities[b] - result.probabilities[a]);
    $("digit").textContent = "not sure";
    showMessage(`Not sure this is a digit the model knows: maybe ${first} ` +
                `(${pct(result.probabilities[first])}) or ${second} (${pct(result.probabilities[second])}).`);
  } else {
    showMessage("");
    $("digit").textContent = result.digit;
  }
  $("digit").classList.toggle("unsure", Boolean(result.not_sure));
  drawBars(result.probabilities);
  $("received").replaceChildren(...mapCanvases(result.input, 4));
  if (result.filters) {
    $("filters").replaceChildren(...mapCanvases(result.filters, scaleFor(result.filters.shape[1]) * 2));
  } else {
    $("filters").textContent = "This network has no convolution (an MLP): no filters, no feature maps.";
  }
  const sections = result.layers.map((layer) => {
    const section = document.createElement("div");
    const [c, h, w] = layer.maps.shape;
    const kind = layer.name.startsWith("pooled") ? "pooled features" : "convolved features";
    section.innerHTML = `<h2>${kind} <small>${layer.name}: ${c}×${h}×${w}</small></h2>`;
    const maps = document.createElement("div");
    maps.className = "maps";
    maps.append(...mapCanvases(layer.maps, scaleFor(h)));
    section.append(maps);
    return section;
  });
  $("layers").replaceChildren(...sections);
  $("latency").textContent = `${Math.round(ms)} ms from sending to this answer ` +
                             `(${result.ms} ms of it in the model)`;
  document.body.dataset.latencyMs = ms.toFixed(1);
  document.body.dataset.predictions = Number(document.body.dataset.predictions) + 1;
}

// Files: dropped on the pad, or chosen. The file itself is sent, as `predict` would read it.
function sendFile(file) {
  if (!file) return;
  forget();
  const t0 = performance.now();
  createImageBitmap(file).then((bitmap) => {
    const k = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.drawImage(bitmap, (pad.width - bitmap.width * k) / 2, (pad.height - bitmap.height * k) / 2,
                  bitmap.width * k, bitmap.height * k);
  }).catch(() => {});  // a format the browser cannot show (TIFF): the server may still read it
  send(file, file.name, t0);
}

pad.addEventListener("dragover", (e) => { e.preventDefault(); pad.classList.add("over"); });
pad.addEventListener("dragleave", () => pad.classList.remove("over"));
pad.addEventListener("drop", (e) => {
  e.preventDefault();
  pad.classList.remove("over");
  sendFile(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", (e) => { sendFile(e.target.files[0]); e.target.value = ""; });
$("clear").addEventListener("click", clearPad);
$("undo").addEventListener("click", undo);
$("labels").append(...[...Array(10).keys()].map((digit) => {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = digit;
  button.dataset.digit = digit;
  button.addEventListener("click", () => correct(digit));
  return button;
}));

async function start() {
  clearPad();
  try {
    const model = await (await fetch("api/model")).json();
    $("about").textContent = model.ready ? "model: " + model.about : "no model yet";
    document.body.dataset.ready = model.ready;
    if (!model.ready) showMessage(model.message);
  } catch (err) {
    showMessage("The demo server does not answer: is `make demo` running?");
  }
}
start();
