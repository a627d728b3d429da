"""The initial schema: users and jobs with the four indexes of spec 022.

aerich writes a migration in the SQL of the database it was generated on; this one carries both
dialects it was generated on (SQLite and PostgreSQL) and picks the one of the connection.
"""

from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True

_POSTGRES = """
        CREATE TABLE IF NOT EXISTS "users" (
    "id" VARCHAR(25) NOT NULL PRIMARY KEY,
    "email" VARCHAR(320) NOT NULL UNIQUE,
    "name" VARCHAR(255),
    "role" VARCHAR(16) NOT NULL,
    "token_hash" VARCHAR(64) NOT NULL UNIQUE,
    "is_active" BOOL NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL
);
COMMENT ON COLUMN "users"."role" IS 'ADMIN: ADMIN\nUSER: USER\nWORKER: WORKER';
CREATE TABLE IF NOT EXISTS "jobs" (
    "id" VARCHAR(25) NOT NULL PRIMARY KEY,
    "project_name" VARCHAR(255) NOT NULL,
    "output_name" VARCHAR(255) NOT NULL,
    "template_path" VARCHAR(1024) NOT NULL,
    "data_path" VARCHAR(1024) NOT NULL,
    "output_path" VARCHAR(1024) NOT NULL,
    "status" VARCHAR(16) NOT NULL,
    "priority" INT NOT NULL,
    "progress" INT NOT NULL,
    "nexrender_job_id" VARCHAR(255) UNIQUE,
    "nexrender_config" JSON,
    "error_message" TEXT,
    "logs" TEXT,
    "queued_at" TIMESTAMPTZ NOT NULL,
    "started_at" TIMESTAMPTZ,
    "completed_at" TIMESTAMPTZ,
    "estimated_time" INT,
    "actual_time" INT,
    "auto_cancel_at" TIMESTAMPTZ,
    "cancelled_reason" TEXT,
    "sequence" INT NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "updated_at" TIMESTAMPTZ NOT NULL,
    "user_id" VARCHAR(25) NOT NULL REFERENCES "users" ("id") ON DELETE RESTRICT,
    "worker_id" VARCHAR(25) REFERENCES "users" ("id") ON DELETE RESTRICT
);
CREATE INDEX IF NOT EXISTS "idx_jobs_user" ON "jobs" ("user_id");
CREATE INDEX IF NOT EXISTS "idx_jobs_status" ON "jobs" ("status");
CREATE INDEX IF NOT EXISTS "idx_jobs_priority_queued" ON "jobs" ("priority", "queued_at");
CREATE INDEX IF NOT EXISTS "idx_jobs_auto_cancel" ON "jobs" ("auto_cancel_at");
COMMENT ON COLUMN "jobs"."status" IS 'PENDING: PENDING\nVALIDATING: VALIDATING\nQUEUED: QUEUED\nRENDERING: RENDERING\nCOMPLETED: COMPLETED\nFAILED: FAILED\nCANCELLED: CANCELLED';
COMMENT ON COLUMN "jobs"."estimated_time" IS 'seconds';
COMMENT ON COLUMN "jobs"."actual_time" IS 'seconds';
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);"""

_SQLITE = """
        CREATE TABLE IF NOT EXISTS "users" (
    "id" VARCHAR(25) NOT NULL PRIMARY KEY,
    "email" VARCHAR(320) NOT NULL UNIQUE,
    "name" VARCHAR(255),
    "role" VARCHAR(16) NOT NULL /* ADMIN: ADMIN\nUSER: USER\nWORKER: WORKER */,
    "token_hash" VARCHAR(64) NOT NULL UNIQUE,
    "is_active" INT NOT NULL,
    "created_at" TIMESTAMP NOT NULL,
    "updated_at" TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS "jobs" (
    "id" VARCHAR(25) NOT NULL PRIMARY KEY,
    "project_name" VARCHAR(255) NOT NULL,
    "output_name" VARCHAR(255) NOT NULL,
    "template_path" VARCHAR(1024) NOT NULL,
    "data_path" VARCHAR(1024) NOT NULL,
    "output_path" VARCHAR(1024) NOT NULL,
    "status" VARCHAR(16) NOT NULL /* PENDING: PENDING\nVALIDATING: VALIDATING\nQUEUED: QUEUED\nRENDERING: RENDERING\nCOMPLETED: COMPLETED\nFAILED: FAILED\nCANCELLED: CANCELLED */,
    "priority" INT NOT NULL,
    "progress" INT NOT NULL,
    "nexrender_job_id" VARCHAR(255) UNIQUE,
    "nexrender_config" JSON,
    "error_message" TEXT,
    "logs" TEXT,
    "queued_at" TIMESTAMP NOT NULL,
    "started_at" TIMESTAMP,
    "completed_at" TIMESTAMP,
    "estimated_time" INT /* seconds */,
    "actual_time" INT /* seconds */,
    "auto_cancel_at" TIMESTAMP,
    "cancelled_reason" TEXT,
    "sequence" INT NOT NULL,
    "created_at" TIMESTAMP NOT NULL,
    "updated_at" TIMESTAMP NOT NULL,
    "user_id" VARCHAR(25) NOT NULL REFERENCES "users" ("id") ON DELETE RESTRICT,
    "worker_id" VARCHAR(25) REFERENCES "users" ("id") ON DELETE RESTRICT
);
CREATE INDEX IF NOT EXISTS "idx_jobs_user" ON "jobs" ("user_id");
CREATE INDEX IF NOT EXISTS "idx_jobs_status" ON "jobs" ("status");
CREATE INDEX IF NOT EXISTS "idx_jobs_priority_queued" ON "jobs" ("priority", "queued_at");
CREATE INDEX IF NOT EXISTS "idx_jobs_auto_cancel" ON "jobs" ("auto_cancel_at");
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSON NOT NULL
);"""


async def upgrade(db: BaseDBAsyncClient) -> str:
    return _POSTGRES if db.capabilities.dialect == "postgres" else _SQLITE


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        DROP TABLE IF EXISTS "jobs";
        DROP TABLE IF EXISTS "users";"""


MODELS_STATE = (
    "eJztm21z2jgQgP8K40+5mVwnoUnaydzcDCFOS8NLSpy00+PGI2wBbmzJleUGJpf/fpJs43"
    "fO5jAHnL+AWe1a0rNrIa3kF8nCOjSdNw8OJNJl40VCwILsIiY/bkjAtkMpF1AwNoWiyzSE"
    "BIwdSoBGmXACTAcykQ4djRg2NTBiUuSaJhdijSkaaBqKXGT8cKFK8RTSmWjIH38ysYF0OI"
    "dO8NN+UicGNPVYOw2d1y3kKl3YQtaeAXIjNHl1Y1XDpmuhUNte0BlGS3XWGi6dQgQJoFCP"
    "dIC3z+9oIPLaygSUuHDZSD0U6HACXJNjkH6buEjjvW/4OMfAgW8QfFYN/Xe/cRF1Ve0PFP"
    "VeVlRVKkFPw4iTNxB1BBoLzFUToimdsZ/N81evnhCRp8UrfGwN2x9bw6Pm+S+8Qszc5zm1"
    "75c0RdGruAWgwLuJcEjoAWgBwyzjhKXBtvwQoKsc9tvmSQHaTCsXtyjjvEO+4rsE3kB/Lb"
    "o+uyXcQCWkGz7bW8fbPC8WzKui+TyJl2AzB6+MXEsg7rA2AaTBFOrAdjOBXIS19HAvD0uO"
    "HFLrutfpXzbE1wjxO1w2+OcIfRkMb/kv71tawyenFwVccnqR6xFeFHcIxU8QqTPgzMpEfd"
    "zq4EaWi7MCmC/OcjHzojhmw1HZn7XxMyP4rzCLa4By/kKjdgnOY2ZYVeQH7CtAvQLt1WDQ"
    "5Xe2HOeHKQQdJcH4oXclsxAX6JmSQYW401cSwDUCORIV0DTxa1ZCDQtmI49bJpjrvumb4K"
    "IqB1QZ66yD+gCZC9/PKxyidHryvdLq3cW8ct1SZF7SFNJFQnqUHH6WN2l86SgfG/xn49ug"
    "Lwu82KFTImoM9ZRvEm8TcClWEX5WgR4ZDgJpQC3mddfW1/R63LL2+q54PWAUcbtoPV+iTJ"
    "4iU2QuGAPt6RkQXY2VhOHxHY+djAHYt7q5HUITCK7pEPCXFJ/weA99/xpEeyANYyAyYpqA"
    "RbaubgvSjk1+cxnxwMJNnBdq6SKraSUlAIGp6BKvm9cUIZWRB/AB5qcBAh9VmgV4kcJeiM"
    "QDW0dLXAfObfbwOqyGZQ/DBMFcBJDq+qmMIDQkYccaK36IwIvcnc34qesUvrmvXvj2NjEw"
    "MeiCa7FOu944X7S2wFr1TItXK8Ysja9lzDL1RcxW1FXnaHY2R2MT/B1qVC2bS0jabW+hu9"
    "9JBexS2y2PO2FW0y5Gm0LLZjMAqNqAlksaJA0PkPjpSbNI7oCr5SdpRGEcuhhrygKPGdWw"
    "C8P2B4ayuBNmNfDCwMP53Dp54dB6i5nhO7l/3el/KJsc9s0uG/7FCD22uh22iBbC8HqEPj"
    "/ID/L1ZcP7HqEhM5CHQm15OULtQe+uKytccXk5QjetTpeLvG+m1eq35a4QLS93I/0cnZnH"
    "fd9BNG+WFJokHM5XbRU5/LyqB2zKW/Br8/Ts3dn7txdn75mKaOVS8m4F83Tek80heWYl42"
    "FaATQ02R7Qkz0BiuCcQNYPwhdnarnFVZbtRjYKd2ivpJI5ZgiO1T0xpmnoj5CMATWsT/eD"
    "/j/BD++RzOsaGm381TANp0iY72bCKos6hxLL3Qawj3qtr0k/tLuDqwR+SAgmqsXGBDDNWF"
    "IpcJ4zlKQMD2FbfFWmXP6qrAa9TJR3B/0Pgfpq+iaeZgzf+dAD/Zp1edZhNjAFfPV+Uczw"
    "v9ouykmnuVTjWyWV5dP2d+sovWPIFg9kvR3DuOUGQmCPHsV987KGLduEa54HSNjWnt5lT0"
    "OH+UDs5Ae+KLgKShuutRbajmslBzIf6k7BRfyGl0RAoy4wywJOWNV08+jGdw1LjlZp63q8"
    "2uXxynOVyYYdAoHjnaooOvHPsq0XAeUXAQ5k3fYzywUHs6hJnTOrD18e+jG8+vDl/9HreY"
    "cvY173D4alXJ6fFo+YHOAm6abOF4WInzF5Kg05ZnQIs4IqKKdOEcfjOs37BhNoTNEtXKT2"
    "pLPPwgavdO5ZSOedhmViAp6Xpw6jjzLrO+sx9F7IGLJhZdhpK1JGIG+P6o5FcFGosUc3B2"
    "v+cfcqzyu3IDG0mZRxZNkvOV51ahmEOjvz9nLuDD9z4MyY2/sO3N032zYyt88/7PoTEsfI"
    "Wrfm/zVFTA7y/7+CDXH+UJUg7KsfIN3TkyIvfTOtFQfQUi99sxopRBnLlvzTBRGTf3WoYN"
    "dob/RUwXF8tcFvcJU169rmn9nr34pfjF8="
)
