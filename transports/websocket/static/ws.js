"use strict";
// voxframe's raw WebSocket format from a browser: the microphone as 16-bit PCM at 16 kHz in
// binary messages (20 ms each), the bot's audio back the same way, JSON events beside them.
// {"type": "clear"} (a barge-in) stops the bot audio scheduled but not yet played.

const RATE = 16000;
const CHUNK = RATE / 50; // 20 ms
const LEAD_S = 0.06; // playback starts this far ahead: room for network jitter

const state = (window.voxframeWs = {
  status: "idle",
  sessionId: null,
  events: [],
  sentChunks: 0,
  audioChunks: 0,
  audibleChunks: 0,
  peakRms: 0,
  clears: 0,
});

const $ = (id) => document.getElementById(id);
let ws = null;
let ctx = null;
let stream = null;
let playAt = 0;
let playing = [];
let pending = new Int16Array(0);

const CAPTURE = `class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("voxframe-capture", Capture);`;

function setStatus(text) {
  state.status = text;
  $("status").textContent = text;
}

function log(text, cls) {
  const line = document.createElement("div");
  line.textContent = text;
  if (cls) line.className = cls;
  $("log").prepend(line);
}

function sendMic(samples) {
  // Float32 at the context's rate (16 kHz) -> Int16 chunks of 20 ms.
  const merged = new Int16Array(pending.length + samples.length);
  merged.set(pending);
  for (let i = 0; i < samples.length; i++) {
    merged[pending.length + i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
  }
  let offset = 0;
  while (merged.length - offset >= CHUNK) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(merged.slice(offset, offset + CHUNK).buffer);
      state.sentChunks += 1;
    }
    offset += CHUNK;
  }
  pending = merged.slice(offset);
}

function play(buffer) {
  const pcm = new Int16Array(buffer);
  const audio = ctx.createBuffer(1, pcm.length, RATE);
  const channel = audio.getChannelData(0);
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) {
    channel[i] = pcm[i] / 32768;
    sum += channel[i] * channel[i];
  }
  const rms = Math.sqrt(sum / Math.max(1, pcm.length));
  state.audioChunks += 1;
  state.peakRms = Math.max(state.peakRms, rms);
  if (rms > 0.01) state.audibleChunks += 1;
  const source = ctx.createBufferSource();
  source.buffer = audio;
  source.connect(ctx.destination);
  playAt = Math.max(playAt, ctx.currentTime + LEAD_S);
  source.start(playAt);
  playAt += audio.duration;
  playing.push(source);
  source.onended = () => {
    playing = playing.filter((s) => s !== source);
  };
}

function clearPlayback() {
  for (const source of playing) source.stop();
  playing = [];
  playAt = 0;
  state.clears += 1;
}

function onEvent(message) {
  // RTVI events (the bot's speaking, transcripts, text) arrive as {label, type, data}; the raw
  // format's own messages (session, clear, error) are flat.
  const event = message.label === "rtvi-ai" ? { ...(message.data || {}), type: message.type } : message;
  state.events.push(event);
  switch (event.type) {
    case "session":
      state.sessionId = event.session_id;
      setStatus("connected");
      break;
    case "clear":
      clearPlayback();
      break;
    case "user-transcription":
      if (event.final) log(`you: ${event.text}`, "user");
      break;
    case "bot-llm-text":
      log(`bot: ${event.text}`, "bot");
      break;
    case "error":
      log(`error: ${event.message}`, "note");
      break;
    default:
      break;
  }
}

async function connect() {
  $("connect").disabled = true;
  setStatus("connecting");
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 },
    });
    ctx = new AudioContext({ sampleRate: RATE });
    const url = URL.createObjectURL(new Blob([CAPTURE], { type: "application/javascript" }));
    await ctx.audioWorklet.addModule(url);
    const capture = new AudioWorkletNode(ctx, "voxframe-capture");
    capture.port.onmessage = (message) => sendMic(message.data);
    ctx.createMediaStreamSource(stream).connect(capture);
    const token = new URLSearchParams(location.search).get("token");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = `sample_rate=${RATE}` + (token ? `&token=${encodeURIComponent(token)}` : "");
    ws = new WebSocket(`${scheme}//${location.host}/ws?${query}`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (message) => {
      if (typeof message.data === "string") onEvent(JSON.parse(message.data));
      else play(message.data);
    };
    ws.onclose = () => hangUp("disconnected");
    $("hangup").disabled = false;
  } catch (error) {
    log(`could not connect: ${error}`, "note");
    hangUp("failed");
  }
}

function hangUp(status) {
  if (ws) {
    ws.onclose = null;
    ws.close();
    ws = null;
  }
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  if (ctx) ctx.close();
  ctx = null;
  playing = [];
  playAt = 0;
  setStatus(status || "idle");
  $("connect").disabled = false;
  $("hangup").disabled = true;
}

$("connect").addEventListener("click", connect);
$("hangup").addEventListener("click", () => hangUp("idle"));
