// voxframe browser client: microphone in, bot audio out, events on a data channel.
// Plain JS, no build step. `window.voxframe` exposes state for tests and debugging.
"use strict";

const API = "/api/voice";
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);

const state = {
  status: "idle",
  sessionId: null,
  events: [],
  // Bot audio as heard by the page: level of the last analyser frame, peak, and how many
  // analyser frames were above the audible threshold.
  receivedRms: 0,
  peakRms: 0,
  audibleFrames: 0,
  // Dominant frequency (Hz) of the loudest analyser frame heard so far.
  loudestHz: null,
  turns: {},
};
window.voxframe = state;

let pc = null;
let meterTimer = null;
let lastUserStop = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function api(method, path, body) {
  const reply = await fetch(API + path, { method, headers: headers(), body: body && JSON.stringify(body) });
  const data = await reply.json();
  if (!reply.ok) throw new Error(`${reply.status} ${data.error ? data.error.message : ""}`);
  return data;
}

function setStatus(text) {
  state.status = text;
  $("status").textContent = text;
}

// --- the call ---------------------------------------------------------------------------------

async function connect() {
  $("connect").disabled = true;
  setStatus("connecting");
  try {
    const config = await api("GET", "/config");
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    pc = new RTCPeerConnection(config.rtcConfiguration);
    mic.getTracks().forEach((track) => pc.addTrack(track, mic));
    const channel = pc.createDataChannel("events");
    channel.onmessage = (msg) => onEvent(JSON.parse(msg.data));
    pc.ontrack = (event) => playBot(event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => {
      setStatus(pc.connectionState);
      if (["failed", "closed"].includes(pc.connectionState)) hangUp();
    };
    trickle(pc);
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await api("POST", "/offer", { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
    state.sessionId = answer.session_id;
    flushCandidates();
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    $("hangup").disabled = false;
  } catch (err) {
    setStatus(`error: ${err.message}`);
    hangUp();
  }
}

// Candidates are sent as they are found (trickle ICE): the offer does not wait for gathering.
let pendingCandidates = [];
function trickle(peer) {
  peer.onicecandidate = (event) => {
    const c = event.candidate;
    pendingCandidates.push(c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null);
    flushCandidates();
  };
}

function flushCandidates() {
  if (!state.sessionId || !pendingCandidates.length) return;
  const batch = pendingCandidates;
  pendingCandidates = [];
  const candidates = batch.filter((c) => c && c.candidate);
  const end = batch.includes(null);
  api("PATCH", `/sessions/${state.sessionId}`, { candidates, end }).catch((err) => console.warn("trickle", err));
}

function hangUp() {
  if (state.sessionId) api("DELETE", `/sessions/${state.sessionId}`).catch(() => {});
  state.sessionId = null;
  if (pc) {
    pc.getSenders().forEach((s) => s.track && s.track.stop());
    pc.close();
    pc = null;
  }
  clearInterval(meterTimer);
  $("connect").disabled = false;
  $("hangup").disabled = true;
  if (!state.status.startsWith("error")) setStatus("idle");
}

// --- hearing the bot ----------------------------------------------------------------------------

function playBot(stream) {
  const audio = $("bot-audio");
  audio.srcObject = stream;
  audio.play().catch(() => {});
  // Level meter (and the test hook): Chrome only feeds WebAudio from a remote stream that
  // is also attached to a media element, which it is above.
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  let quiet = true;
  meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const rms = Math.sqrt(sum / buf.length);
    state.receivedRms = rms;
    if (rms > state.peakRms) {
      state.peakRms = rms;
      analyser.getFloatFrequencyData(spectrum);
      let best = 0;
      for (let i = 1; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
      state.loudestHz = (best * ctx.sampleRate) / analyser.fftSize;
    }
    $("meter").firstElementChild.style.width = `${Math.min(100, rms * 400)}%`;
    const audible = rms > 0.01;
    if (audible) state.audibleFrames += 1;
    if (audible && quiet && lastUserStop !== null) {
      showLatency("heard", performance.now() - lastUserStop);
      lastUserStop = null;
    }
    quiet = !audible;
  }, 20);
}

// --- events ------------------------------------------------------------------------------------------

let currentUser = null;
let currentBot = null;
let currentTurn = null;

function line(cls, text) {
  const el = document.createElement("div");
  el.className = cls;
  el.textContent = text;
  $("log").appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function showLatency(kind, ms) {
  const target = currentTurn || line("turn", "");
  const el = document.createElement("div");
  el.className = "latency";
  el.textContent = kind === "heard" ? `heard after ${ms.toFixed(0)} ms` : `server: ${ms.toFixed(0)} ms to first audio`;
  target.appendChild(el);
}

function onEvent(event) {
  state.events.push(event);
  switch (event.type) {
    case "transcript":
      if (!currentUser) currentUser = line("user interim", "");
      currentUser.textContent = event.text;
      if (event.final) {
        currentUser.className = "user";
        currentUser = null;
      }
      break;
    case "user_stopped_speaking":
      lastUserStop = performance.now();
      break;
    case "bot_started_speaking":
      currentTurn = line("turn", "");
      break;
    case "bot_text":
      if (!currentBot || currentBot.dataset.turn !== String(event.turn)) {
        currentBot = line("bot", "");
        currentBot.dataset.turn = String(event.turn);
      }
      currentBot.textContent += event.text;
      break;
    case "bot_stopped_speaking":
      if (event.interrupted && currentBot) currentBot.classList.add("interrupted");
      break;
    case "turn_latency":
      state.turns[event.turn] = event;
      showLatency("server", event.latency_ms);
      break;
  }
}

$("connect").onclick = connect;
$("hangup").onclick = hangUp;
