import os
import uuid

import pytest

# Tests run on the CPU with few threads: the suite must fit 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)


SERVER = os.environ.get("VAE_STUDY_POSTGRES", "postgresql://root@127.0.0.1:5432")


@pytest.fixture()
def postgres_uri():
    """A fresh PostgreSQL database URL, dropped afterwards (skip, or fail in CI, without a server)."""
    try:
        import psycopg
    except ImportError:
        if os.environ.get("VAE_STUDY_REQUIRE_POSTGRES") == "1":
            pytest.fail("psycopg is not installed but PostgreSQL tests are required")
        pytest.skip("psycopg is not installed (pip install '.[postgres]')")
    name = f"vae_study_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"{SERVER}/postgres", connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        if os.environ.get("VAE_STUDY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable at {SERVER}: {error}")
        pytest.skip(f"no PostgreSQL at {SERVER}: {error}")
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        # MLflow's pooled connections would block DROP DATABASE: end them first.
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
