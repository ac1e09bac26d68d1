# One image for every nsmigrate process: the worker pools, Flower and one-off `nsmigrate ...` commands
# (docker-compose.yml picks the command per service).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs is copied, so a local .env (secrets), .venv or test data can never end up in the image.
# README.md* matches nothing while there is no README, and the build still works.
# The one package, nsmigrate, is made of these folders (setup.py maps them); the stand-ins (sandbox/) are not part of it.
COPY pyproject.toml setup.py constraints.txt README.md* ./
COPY nsmigrate ./nsmigrate
COPY cli ./cli
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY migrations ./migrations

# The dependencies at the versions the tests passed with (constraints.txt), not whatever is newest at build time.
RUN pip install -c constraints.txt . \
    && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin nsmigrate

# Run unprivileged: the processes only need the network (Redis, Postgres, Pinecone), never root.
USER nsmigrate
WORKDIR /home/nsmigrate

CMD ["nsmigrate", "--help"]
