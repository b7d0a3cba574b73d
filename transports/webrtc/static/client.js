// voxframe browser client: microphone in, bot audio out, RTVI on a data channel (the protocol of
// Pipecat's client SDKs: see voxframe/transports/rtvi.py). Plain JS, no build step.
// `window.voxframe` exposes state for tests and debugging.
"use strict";

const API = "/api/voice";
const RTVI = { label: "rtvi-ai", version: "2.1.0" };
const AUDIBLE_RMS = 0.01; // -40 dBFS, the project's one loudness rule
const RETRY_S = [1, 2, 4, 8, 8]; // reconnect attempts after a dropped call, then give up
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);

const state = {
  status: "idle",
  ready: false,
  cue: "",
  cues: [],
  sessionId: null,
  events: [],
  muted: false,
  mics: [],
  micLabel: null,
  micRms: 0,
  peakMicRms: 0,
  // Bot audio as heard by the page: level of the last analyser frame, peak, and how many
  // analyser frames were above the audible threshold.
  receivedRms: 0,
  peakRms: 0,
  audibleFrames: 0,
  // Dominant frequency (Hz) of the loudest analyser frame heard so far.
  loudestHz: null,
  // Per bot turn: text as shown, the text when it first appeared, mouth-to-ear, server points.
  turns: {},
  reconnects: 0,
};
window.voxframe = state;

let call = null; // { pc, channel, mic, timers, closing }
let retry = { attempt: 0, timer: null };
let ids = 0;

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

function setCue(text) {
  if (state.cue === text) return;
  state.cue = text;
  state.cues.push(text);
  $("cue").textContent = text;
  $("cue").className = text ? `cue ${text.replace(/\W+/g, "-")}` : "cue";
}

function send(type, data) {
  if (!call || call.channel.readyState !== "open") return false;
  ids += 1;
  call.channel.send(JSON.stringify({ label: RTVI.label, type, id: `page${ids}`, data }));
  return true;
}

// --- the call ---------------------------------------------------------------------------------

async function openMic(deviceId) {
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) audio.deviceId = { exact: deviceId };
  const mic = await navigator.mediaDevices.getUserMedia({ audio });
  mic.getAudioTracks().forEach((t) => (t.enabled = !state.muted));
  state.micLabel = mic.getAudioTracks()[0]?.label || null;
  return mic;
}

async function connect() {
  clearTimeout(retry.timer);
  if (call) return;
  $("connect").disabled = true;
  setStatus("connecting");
  setCue("connecting…");
  state.ready = false;
  const current = (call = { pc: null, channel: null, mic: null, timers: [], contexts: [], closing: false });
  try {
    const config = await api("GET", "/config");
    current.mic = await openMic($("mic").value || undefined);
    listMics();
    const pc = (current.pc = new RTCPeerConnection(config.rtcConfiguration));
    current.mic.getTracks().forEach((track) => pc.addTrack(track, current.mic));
    meterMic(current);
    const channel = (current.channel = pc.createDataChannel("events"));
    channel.onopen = () => send("client-ready", { version: RTVI.version, about: { library: "voxframe-page" } });
    channel.onmessage = (msg) => onMessage(msg.data);
    channel.onclose = () => dropped(current, "the data channel closed");
    pc.ontrack = (event) => playBot(current, event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") setStatus("connected");
      if (["failed", "closed"].includes(pc.connectionState)) dropped(current, `connection ${pc.connectionState}`);
    };
    trickle(current);
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await api("POST", "/offer", { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
    state.sessionId = answer.session_id;
    flushCandidates(current);
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    $("hangup").disabled = false;
  } catch (err) {
    teardown(current);
    setStatus(`error: ${err.message}`);
    scheduleRetry();
  }
}

// Candidates are sent as they are found (trickle ICE): the offer does not wait for gathering.
function trickle(current) {
  current.pending = [];
  current.pc.onicecandidate = (event) => {
    const c = event.candidate;
    current.pending.push(c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null);
    flushCandidates(current);
  };
}

function flushCandidates(current) {
  if (!state.sessionId || call !== current || !current.pending.length) return;
  const batch = current.pending;
  current.pending = [];
  const candidates = batch.filter((c) => c && c.candidate);
  const end = batch.includes(null);
  api("PATCH", `/sessions/${state.sessionId}`, { candidates, end }).catch((err) => console.warn("trickle", err));
}

function teardown(current) {
  if (current.closing) return;
  current.closing = true;
  current.timers.forEach(clearInterval);
  clearInterval(current.micTimer);
  current.contexts.forEach((ctx) => ctx.close().catch(() => {}));
  if (current.pc) {
    current.pc.getSenders().forEach((s) => s.track && s.track.stop());
    current.pc.close();
  }
  if (current.mic) current.mic.getTracks().forEach((t) => t.stop());
  if (call === current) call = null;
  state.ready = false;
  state.sessionId = null;
  $("connect").disabled = false;
  $("hangup").disabled = true;
  $("send").disabled = true;
  setCue("");
}

function hangUp() {
  clearTimeout(retry.timer);
  retry.attempt = RETRY_S.length; // the user ended it: no reconnect
  if (state.sessionId) api("DELETE", `/sessions/${state.sessionId}`).catch(() => {});
  if (call) teardown(call);
  setStatus("idle");
}

// The server went away or the network dropped: say so, let the user reconnect, and try a few
// times by ourselves.
function dropped(current, why) {
  if (current.closing || call !== current) return;
  console.warn("call dropped:", why);
  teardown(current);
  setStatus("disconnected");
  scheduleRetry();
}

function scheduleRetry() {
  if (retry.attempt >= RETRY_S.length) return;
  const delay = RETRY_S[retry.attempt];
  retry.attempt += 1;
  setStatus(`${state.status.startsWith("error") ? state.status : "disconnected"}, retrying in ${delay} s`);
  retry.timer = setTimeout(() => {
    state.reconnects += 1;
    connect();
  }, delay * 1000);
}

// --- the microphone ---------------------------------------------------------------------------------

async function listMics() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const mics = devices.filter((d) => d.kind === "audioinput");
  const select = $("mic");
  const chosen = select.value;
  select.replaceChildren(...mics.map((d, i) => new Option(d.label || `microphone ${i + 1}`, d.deviceId)));
  if (chosen && mics.some((d) => d.deviceId === chosen)) select.value = chosen;
  state.mics = mics.map((d) => d.label);
}

async function chooseMic() {
  if (!call || !call.pc) return;
  const current = call;
  const mic = await openMic($("mic").value);
  const sender = current.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
  if (sender) await sender.replaceTrack(mic.getAudioTracks()[0]);
  current.mic.getTracks().forEach((t) => t.stop());
  current.mic = mic;
  meterMic(current);
}

function toggleMute() {
  state.muted = !state.muted;
  if (call && call.mic) call.mic.getAudioTracks().forEach((t) => (t.enabled = !state.muted));
  $("mute").textContent = state.muted ? "Unmute" : "Mute";
  $("mute").setAttribute("aria-pressed", String(state.muted));
}

// The user's level, and when the page last heard them: the mouth end of mouth-to-ear.
let lastMicLoud = null;
function meterMic(current) {
  const ctx = new AudioContext();
  current.contexts.push(ctx);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(current.mic).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  clearInterval(current.micTimer); // one meter: the chosen microphone's
  current.micTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    const rms = Math.sqrt(buf.reduce((sum, x) => sum + x * x, 0) / buf.length);
    state.micRms = rms;
    state.peakMicRms = Math.max(state.peakMicRms, rms);
    if (rms > AUDIBLE_RMS) lastMicLoud = performance.now();
    $("mic-meter").firstElementChild.style.width = `${Math.min(100, rms * 400)}%`;
  }, 20);
}

// --- hearing the bot ----------------------------------------------------------------------------

let pendingEar = null; // { turn, mouth }: a reply whose first audible sound is awaited
function playBot(current, stream) {
  const audio = $("bot-audio");
  audio.srcObject = stream;
  audio.play().catch(() => {});
  // Chrome only feeds WebAudio from a remote stream that is also attached to a media element.
  const ctx = new AudioContext();
  current.contexts.push(ctx);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  current.timers.push(
    setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      const rms = Math.sqrt(buf.reduce((sum, x) => sum + x * x, 0) / buf.length);
      state.receivedRms = rms;
      if (rms > state.peakRms) {
        state.peakRms = rms;
        analyser.getFloatFrequencyData(spectrum);
        let best = 0;
        for (let i = 1; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
        state.loudestHz = (best * ctx.sampleRate) / analyser.fftSize;
      }
      $("meter").firstElementChild.style.width = `${Math.min(100, rms * 400)}%`;
      if (rms > AUDIBLE_RMS) {
        state.audibleFrames += 1;
        if (pendingEar) heardReply(pendingEar);
      }
    }, 20)
  );
}

function heardReply(pending) {
  pendingEar = null;
  if (pending.mouth === null) return;
  const turn = turnOf(pending.turn);
  turn.m2e_ms = performance.now() - pending.mouth;
  drawLatency(pending.turn);
}

// --- what the bot says, and where the time went --------------------------------------------------

let userLine = null;

function line(cls, text, parent = $("log")) {
  const el = document.createElement("div");
  el.className = cls;
  el.textContent = text;
  parent.appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function turnOf(n) {
  if (!state.turns[n]) {
    const el = line("turn", "");
    el.dataset.turn = String(n);
    const bot = line("bot", "", el);
    const latency = line("latency", "", el);
    latency.hidden = true; // until the turn has a figure (a typed turn has no mouth)
    line("m2e", "", latency);
    const bar = line("waterfall", "", latency);
    bar.setAttribute("role", "img");
    state.turns[n] = { text: "", firstShown: null, llmText: "", m2e_ms: null, points_ms: null, el, bot, latency };
  }
  return state.turns[n];
}

// The waterfall of one turn: from the end of the user's speech, each stage's share up to the
// bot's first audio out, then the network to the ear (the page's own mouth-to-ear figure).
const STAGES = [
  ["vad", "vad_stop", "VAD stop"],
  ["stt", "stt_final", "STT"],
  ["llm", "llm_first_token", "LLM"],
  ["tts", "tts_first_audio", "TTS"],
  ["out", "first_audio_out", "out"],
];

function drawLatency(n) {
  const turn = state.turns[n];
  const points = turn.points_ms || {};
  const end = turn.m2e_ms !== null ? turn.m2e_ms : points.first_audio_out;
  if (end === undefined || end === null) return;
  turn.latency.hidden = false;
  turn.latency.querySelector(".m2e").textContent =
    turn.m2e_ms !== null ? `mouth-to-ear ${Math.round(turn.m2e_ms)} ms` : `${Math.round(end)} ms to first audio`;
  const bar = turn.latency.querySelector(".waterfall");
  const segments = [];
  let at = 0;
  for (const [cls, point, label] of STAGES) {
    if (points[point] === undefined) continue;
    const to = Math.max(at, points[point]);
    segments.push([cls, at, to, label]);
    at = to;
  }
  if (turn.m2e_ms !== null && turn.m2e_ms > at) segments.push(["net", at, turn.m2e_ms, "network"]);
  const total = Math.max(end, at, 1);
  bar.replaceChildren(
    ...segments.map(([cls, from, to, label]) => {
      const seg = document.createElement("span");
      seg.className = `seg ${cls}`;
      seg.style.width = `${(100 * (to - from)) / total}%`;
      seg.title = `${label} ${Math.round(to - from)} ms`;
      seg.dataset.ms = String(Math.round(to - from));
      return seg;
    })
  );
  bar.setAttribute("aria-label", segments.map((s) => s[3] + " " + Math.round(s[2] - s[1]) + " ms").join(", "));
}

function showWord(n, word) {
  const turn = turnOf(n);
  turn.text = turn.text ? `${turn.text} ${word}` : word;
  if (turn.firstShown === null) turn.firstShown = turn.text;
  turn.bot.textContent = turn.text;
}

function onMessage(raw) {
  let message;
  try {
    message = JSON.parse(raw);
  } catch (err) {
    return;
  }
  if (message.label !== RTVI.label) return;
  state.events.push(message);
  const data = message.data || {};
  switch (message.type) {
    case "bot-ready":
      state.ready = true;
      retry.attempt = 0;
      $("send").disabled = false;
      setCue("speak now");
      break;
    case "user-started-speaking":
      setCue("listening…");
      break;
    case "user-stopped-speaking":
      pendingEar = { turn: null, mouth: lastMicLoud };
      setCue("thinking…");
      break;
    case "user-transcription":
      if (!userLine) userLine = line("user interim", "");
      userLine.textContent = data.text;
      if (data.final) {
        userLine.className = "user";
        userLine = null;
      }
      break;
    case "bot-started-speaking":
      turnOf(data.turn);
      pendingEar = pendingEar && pendingEar.turn === null ? { turn: data.turn, mouth: pendingEar.mouth } : null;
      setCue("bot speaking");
      break;
    case "bot-llm-text":
      if (data.turn !== undefined) turnOf(data.turn).llmText += data.text;
      break;
    case "bot-tts-text":
      showWord(data.turn, data.text);
      break;
    case "bot-stopped-speaking": {
      const turn = turnOf(data.turn);
      if (data.interrupted) turn.bot.classList.add("interrupted");
      else if (!turn.text && turn.llmText) turn.bot.textContent = turn.text = turn.llmText.trim();
      setCue(state.ready ? "speak now" : "");
      break;
    }
    case "server-message":
      if (data.type === "turn_latency") {
        const turn = turnOf(data.turn);
        turn.points_ms = data.points_ms;
        turn.latency_ms = data.latency_ms;
        drawLatency(data.turn);
      }
      break;
    case "error":
      line("error", `bot: ${data.error || data.message}`);
      break;
  }
}

function sendTyped(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !send("send-text", { content: text, options: { run_immediately: true, audio_response: true } })) return;
  line("user typed", text);
  $("text").value = "";
}

$("connect").onclick = () => {
  retry.attempt = 0;
  connect();
};
$("hangup").onclick = hangUp;
$("mute").onclick = toggleMute;
$("mic").onchange = () => chooseMic().catch((err) => setStatus(`error: ${err.message}`));
$("say").onsubmit = sendTyped;
if (navigator.mediaDevices) {
  navigator.mediaDevices.ondevicechange = listMics;
  listMics();
}
