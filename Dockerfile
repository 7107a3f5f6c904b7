# A slim image that serves sde on a mounted manifest:
#   docker build -t sde .
#   docker run --rm -p 8050:8050 sde                                          # the demo
#   docker run --rm -p 8050:8050 -v /data/asr:/data sde /data/manifest.json   # your manifest
# (audio paths in the manifest must resolve inside the container: mount the audio folder too and
#  use --audio-base-path when the manifest holds paths from another machine)
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sde ./sde
RUN pip install --no-cache-dir . && rm -rf /src

# A container must listen on all its interfaces; only the ports that `-p` publishes are reachable.
# The cache lives in the container unless a volume is mounted here.
ENV SDE_HOST=0.0.0.0 SDE_PORT=8050 SDE_CACHE_DIR=/cache
VOLUME ["/cache"]
EXPOSE 8050
ENTRYPOINT ["sde"]
CMD ["demo"]
