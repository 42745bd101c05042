# One image for every service; docker-compose.yml picks the command of each.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# bubblewrap: the kernel jail every untrusted program runs in (trainer/jail.py).
RUN apt-get update && apt-get install -y --no-install-recommends curl build-essential bubblewrap \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt
COPY . .
ENV RUN_DIR=/data/run
CMD ["python", "-m", "database", "--host", "0.0.0.0"]
