# The voxframe runner serving a bot file: embedded models and the cloud clients installed.
#
#   docker build -t voxframe .
#   docker run --network host -e VOXFRAME_TOKEN=... -e VOXFRAME_PUBLIC_IP=203.0.113.7 voxframe
#
# WebRTC media is UDP on the ports of VOXFRAME_UDP_PORTS: run with host networking, or publish
# that range (-p 40000-40099:40000-40099/udp) and announce the host's address with
# VOXFRAME_PUBLIC_IP. The runner refuses a public host without VOXFRAME_TOKEN. Put TLS in front
# (nginx, see DEPLOY.md) or pass VOXFRAME_TLS_CERT / VOXFRAME_TLS_KEY: browsers give the
# microphone only to HTTPS pages.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# The package first (its layer is reused while only bot files change).
COPY pyproject.toml setup.py README.md ./
COPY pipeline pipeline
COPY processors processors
COPY transports transports
COPY fakes fakes
COPY runner runner
RUN pip install ".[webrtc,deepgram,cartesia,openai,embedded,otel]"
COPY bots bots

RUN useradd --system --uid 10001 voxframe
USER voxframe

ENV VOXFRAME_HOST=0.0.0.0 VOXFRAME_PORT=7860 VOXFRAME_UDP_PORTS=40000-40099
EXPOSE 7860/tcp 40000-40099/udp
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:7860/healthz')"]
# SIGTERM drains: no new calls, running ones finish (VOXFRAME_DRAIN_DEADLINE), then exit.
STOPSIGNAL SIGTERM
CMD ["voxframe", "run", "bots/example.py"]
