// A page as a Pipecat app builds it: @pipecat-ai/client-js with SmallWebRTCTransport, nothing of
// voxframe's. `window.seen` is what the app was told, for the test to read.
import { PipecatClient } from "@pipecat-ai/client-js";
import { SmallWebRTCTransport, WavMediaManager } from "@pipecat-ai/small-webrtc-transport";

const seen = {
  ready: null,
  connected: false,
  transcripts: [],
  userLlmText: [],
  llmText: [],
  ttsText: [],
  output: [],
  order: [],
  raw: [],
  errors: [],
  response: null,
  audibleFrames: 0,
  peakRms: 0,
  loudestHz: null,
};
window.seen = seen;

// The bot's audio as a person hears it: an <audio> element, measured with an analyser.
function hear(track) {
  const audio = document.getElementById("bot-audio");
  const stream = new MediaStream([track]);
  audio.srcObject = stream;
  audio.play().catch(() => {});
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    const rms = Math.sqrt(sum / buf.length);
    if (rms > 0.01) seen.audibleFrames += 1;
    if (rms > seen.peakRms) {
      seen.peakRms = rms;
      analyser.getFloatFrequencyData(spectrum);
      let best = 1;
      for (let i = 1; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
      seen.loudestHz = (best * ctx.sampleRate) / analyser.fftSize;
    }
  }, 20);
}

// The default media manager loads Daily's call-machine bundle from its CDN; this test reaches
// only 127.0.0.1, so it takes the package's other manager (plain getUserMedia).
const transport = new SmallWebRTCTransport({
  mediaManager: new WavMediaManager(),
  webrtcRequestParams: { endpoint: "/api/offer" },
});
// Every RTVI message as it arrives (the client drops types it has no callback for).
const handle = transport.handleMessage.bind(transport);
transport.handleMessage = (text) => {
  try {
    const message = JSON.parse(text);
    if (message.label === "rtvi-ai") seen.raw.push(message);
  } catch (err) {
    // not JSON: the transport's own business
  }
  handle(text);
};

const mark = (name) => seen.order.push(name);
const client = new PipecatClient({
  transport,
  enableMic: true,
  enableCam: false,
  callbacks: {
    onBotReady: (data) => {
      seen.ready = data;
      mark("bot-ready");
    },
    onUserTranscript: (t) => {
      seen.transcripts.push(t);
      if (t.final) mark("user-transcript");
    },
    onUserLlmText: (d) => seen.userLlmText.push(d.text),
    onUserStartedSpeaking: () => mark("user-started-speaking"),
    onUserStoppedSpeaking: () => mark("user-stopped-speaking"),
    onBotStartedSpeaking: () => mark("bot-started-speaking"),
    onBotStoppedSpeaking: () => mark("bot-stopped-speaking"),
    onBotLlmText: (d) => seen.llmText.push(d.text),
    onBotTtsText: (d) => seen.ttsText.push(d.text),
    onBotOutput: (d) => seen.output.push(d.text),
    onBotDisconnected: () => mark("bot-disconnected"),
    onTrackStarted: (track, participant) => {
      if (track.kind === "audio" && !(participant && participant.local)) hear(track);
    },
    onError: (message) => seen.errors.push(JSON.stringify(message.data)),
    onMessageError: (message) => seen.errors.push(JSON.stringify(message.data)),
  },
});
window.pipecat = client;

(async () => {
  try {
    await client.connect();
    seen.connected = true;
    seen.response = await client.sendClientRequest("ping", { n: 7 }, 5000);
  } catch (err) {
    seen.errors.push(String(err && err.message ? err.message : err));
  }
})();
