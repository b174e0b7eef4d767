"""The study database's first schema: studies, methods, clips, videos, participants, trials, their media, answers.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("design", sa.String(8), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("attention_checks", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("admin_token_hash", sa.String(64), nullable=False),
        sa.Column("wandb_group", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "method",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.UniqueConstraint("study_id", "name"),
    )
    op.create_table(
        "clip",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("emotion", sa.String(40), nullable=True),
        sa.Column("reference_path", sa.Text(), nullable=True),
        sa.UniqueConstraint("study_id", "name"),
    )
    op.create_table(
        "video",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("clip.id"), nullable=False),
        sa.Column("method_id", sa.Integer(), sa.ForeignKey("method.id"), nullable=False),
        sa.Column("shifted", sa.Boolean(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
    )
    op.create_table(
        "participant",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("study.id"), nullable=False, index=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("completion_code", sa.String(40), nullable=False),
        sa.Column("consented_at", sa.DateTime(), nullable=True),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("study_id", "number"),
    )
    op.create_table(
        "trial",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("participant_id", sa.Integer(), sa.ForeignKey("participant.id"), nullable=False, index=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("criterion", sa.String(20), nullable=False),
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("clip.id"), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=True),
        sa.Column("shown_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("participant_id", "position"),
    )
    op.create_table(
        "trial_media",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trial.id"), nullable=False, index=True),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("media_id", sa.String(40), nullable=False, unique=True),
        sa.Column("video_id", sa.Integer(), sa.ForeignKey("video.id"), nullable=False),
        sa.UniqueConstraint("trial_id", "slot"),
    )
    op.create_table(
        "answer",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trial.id"), nullable=False, unique=True),
        sa.Column("participant_id", sa.Integer(), sa.ForeignKey("participant.id"), nullable=False, index=True),
        sa.Column("choice", sa.Integer(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("answer", "trial_media", "trial", "participant", "video", "clip", "method", "study"):
        op.drop_table(table)
