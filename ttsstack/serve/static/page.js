// The page's logic: list the served models, stream speech over the WebSocket, play it with Web Audio,
// show the time to first audio and highlight each word while it is heard (when the model gives timings).
"use strict";

const $ = (id) => document.getElementById(id);
const models = {};

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function loadModels() {
  const response = await fetch("/v1/models");
  if (!response.ok) { setStatus(`models: HTTP ${response.status}`, true); return; }
  for (const card of (await response.json()).data) {
    models[card.id] = card;
    $("model").add(new Option(`${card.id} (${card.backend})`, card.id));
  }
  $("speak").disabled = $("model").options.length === 0;
  setStatus($("model").options.length ? "ready" : "no model served");
}

// Words of the text as spans, so that the words the server times can be highlighted by character offset.
function showWords(text) {
  const box = $("spoken");
  box.textContent = "";
  const spans = [];
  let at = 0;
  for (const match of text.matchAll(/\S+/g)) {
    box.append(text.slice(at, match.index));
    const span = document.createElement("span");
    span.textContent = match[0];
    span.dataset.start = match.index;
    span.dataset.end = match.index + match[0].length;
    box.append(span);
    spans.push(span);
    at = match.index + match[0].length;
  }
  box.append(text.slice(at));
  return spans;
}

function spanOf(spans, word) {
  return spans.find((s) => Number(s.dataset.start) <= word.start_char && word.start_char < Number(s.dataset.end));
}

function speak() {
  const model = $("model").value;
  const text = $("text").value;
  const timings = Boolean(models[model] && models[model].word_timings);
  const spans = showWords(text);
  const clicked = performance.now();
  $("first-audio").textContent = "–";
  $("audio-seconds").textContent = "–";
  $("speak").disabled = true;
  setStatus("connecting…");

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/v1/audio/speech/stream`);
  socket.binaryType = "arraybuffer";
  let context = null;
  let startAt = 0;     // context time at which the session's audio starts
  let nextAt = 0;      // context time at which the next chunk plays
  let samples = 0;
  const timed = [];    // {start, end, span}

  socket.onopen = async () => {
    socket.send(JSON.stringify({ type: "start", model, timings }));
    const fragments = $("as-written").checked ? text.match(/\s*\S+/g) || [] : [text];
    for (const [index, fragment] of fragments.entries()) {
      if (index > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify({ type: "text", text: fragment }));
    }
    socket.send(JSON.stringify({ type: "end" }));
  };
  socket.onmessage = (event) => {
    if (event.data instanceof ArrayBuffer) { play(new Int16Array(event.data)); return; }
    const message = JSON.parse(event.data);
    if (message.type === "start") {
      context = new AudioContext({ sampleRate: message.sample_rate });
      setStatus("speaking…");
    } else if (message.type === "timings") {
      for (const word of message.words) timed.push({ start: word.start, end: word.end, span: spanOf(spans, word) });
    } else if (message.type === "error") {
      setStatus(`${message.code}: ${message.message}`, true);
    } else if (message.type === "end") {
      setStatus("done");
    }
  };
  socket.onclose = (event) => {
    $("speak").disabled = false;
    if (event.code !== 1000 && event.code !== 1005) setStatus(`closed: ${event.reason || event.code}`, true);
  };

  function play(pcm) {
    if (!pcm.length) return;
    const buffer = context.createBuffer(1, pcm.length, context.sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32767;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    if (samples === 0) {
      startAt = nextAt = context.currentTime + 0.05;
      $("first-audio").textContent = `${Math.round(performance.now() - clicked)} ms`;
      requestAnimationFrame(highlight);
    }
    nextAt = Math.max(nextAt, context.currentTime);
    source.start(nextAt);
    nextAt += buffer.duration;
    samples += pcm.length;
    $("audio-seconds").textContent = `${(samples / context.sampleRate).toFixed(2)} s`;
  }

  function highlight() {
    const now = context.currentTime - startAt;
    for (const word of timed) {
      if (!word.span) continue;
      const current = word.start <= now && now < word.end;
      word.span.classList.toggle("current", current);
      if (current) word.span.classList.add("spoken");
    }
    if (now < (nextAt - startAt) + 0.1 || socket.readyState !== WebSocket.CLOSED) requestAnimationFrame(highlight);
  }
}

$("speak").addEventListener("click", speak);
loadModels().catch((error) => setStatus(`models: ${error}`, true));
