"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The original design's crm_* tables plus tenants, sync links, checkpoints, job steps, the vault, API keys
    and automation runs."""

    op.create_table('crm_credentials_vault',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('tenants',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('crm_api_keys',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_table('crm_automation_rules',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('trigger', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('conditions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('actions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_crm_automation_rules_name')
    )
    op.create_table('crm_companies',
    sa.Column('name', sa.String(length=500), nullable=True),
    sa.Column('domain', sa.String(length=255), nullable=True),
    sa.Column('industry', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=100), nullable=True),
    sa.Column('website', sa.String(length=500), nullable=True),
    sa.Column('city', sa.String(length=200), nullable=True),
    sa.Column('country', sa.String(length=200), nullable=True),
    sa.Column('employee_count', sa.Integer(), nullable=True),
    sa.Column('annual_revenue', sa.Float(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('custom_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('last_change_cause', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_companies_tenant_domain', 'crm_companies', ['tenant_id', sa.text('lower(domain)')], unique=False)
    op.create_index('ix_crm_companies_tenant_updated', 'crm_companies', ['tenant_id', 'updated_at'], unique=False)
    op.create_table('crm_sync_configs',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('sync_direction', sa.String(length=16), nullable=False),
    sa.Column('sync_frequency_minutes', sa.Integer(), nullable=False),
    sa.Column('conflict_strategy', sa.String(length=32), nullable=False),
    sa.Column('source_priority', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sync_contacts', sa.Boolean(), nullable=False),
    sa.Column('sync_companies', sa.Boolean(), nullable=False),
    sa.Column('sync_deals', sa.Boolean(), nullable=False),
    sa.Column('sync_activities', sa.Boolean(), nullable=False),
    sa.Column('sync_tasks', sa.Boolean(), nullable=False),
    sa.Column('credentials_vault_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('webhook_secret_vault_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('field_mappings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('value_mappings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=True),
    sa.Column('api_base_url', sa.String(length=500), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('next_sync_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_sync_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['credentials_vault_id'], ['crm_credentials_vault.id'], ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['webhook_secret_vault_id'], ['crm_credentials_vault.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('platform', 'account_id', name='uq_crm_sync_configs_platform_account'),
    sa.UniqueConstraint('tenant_id', 'id', name='uq_crm_sync_configs_tenant_id')
    )
    op.create_index('ix_crm_sync_configs_due', 'crm_sync_configs', ['enabled', 'next_sync_at'], unique=False)
    op.create_table('crm_conflict_records',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('config_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=True),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('entity_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=True),
    sa.Column('local_snapshot', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('remote_snapshot', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('base_snapshot', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('conflicting_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolution', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['config_id'], ['crm_sync_configs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_conflict_records_entity', 'crm_conflict_records', ['entity_type', 'entity_id', 'status'], unique=False)
    op.create_index('ix_crm_conflict_records_tenant_status', 'crm_conflict_records', ['tenant_id', 'status', 'created_at'], unique=False)
    op.create_table('crm_contacts',
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=100), nullable=True),
    sa.Column('job_title', sa.String(length=200), nullable=True),
    sa.Column('company_name', sa.String(length=500), nullable=True),
    sa.Column('lifecycle_stage', sa.String(length=64), nullable=True),
    sa.Column('lead_status', sa.String(length=64), nullable=True),
    sa.Column('lead_source', sa.String(length=128), nullable=True),
    sa.Column('lead_score', sa.Float(), nullable=True),
    sa.Column('tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('city', sa.String(length=200), nullable=True),
    sa.Column('country', sa.String(length=200), nullable=True),
    sa.Column('company_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('custom_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('last_change_cause', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['crm_companies.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_contacts_tenant_email', 'crm_contacts', ['tenant_id', sa.text('lower(email)')], unique=False)
    op.create_index('ix_crm_contacts_tenant_updated', 'crm_contacts', ['tenant_id', 'updated_at'], unique=False)
    op.create_table('crm_sync_checkpoints',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('config_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('cursor', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('synced_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('job_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['config_id'], ['crm_sync_configs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('config_id', 'entity_type', name='uq_crm_sync_checkpoints_entity')
    )
    op.create_table('crm_sync_jobs',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('sync_config_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('steps_total', sa.Integer(), nullable=False),
    sa.Column('steps_done', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sync_config_id'], ['crm_sync_configs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_sync_jobs_config_created', 'crm_sync_jobs', ['sync_config_id', 'created_at'], unique=False)
    op.create_index('ix_crm_sync_jobs_status', 'crm_sync_jobs', ['status', 'updated_at'], unique=False)
    op.create_index('uq_crm_sync_jobs_one_active', 'crm_sync_jobs', ['sync_config_id'], unique=True, postgresql_where=sa.text("status IN ('queued', 'running', 'waiting_quota')"), sqlite_where=sa.text("status IN ('queued', 'running', 'waiting_quota')"))
    op.create_table('crm_sync_links',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('config_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('local_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=True),
    sa.Column('base', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('base_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('remote_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'config_id'], ['crm_sync_configs.tenant_id', 'crm_sync_configs.id'], name='fk_crm_sync_links_config', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'platform', 'entity_type', 'external_id', name='uq_crm_sync_links_external'),
    sa.UniqueConstraint('tenant_id', 'platform', 'entity_type', 'local_id', name='uq_crm_sync_links_local')
    )
    op.create_index('ix_crm_sync_links_config', 'crm_sync_links', ['config_id', 'entity_type'], unique=False)
    op.create_table('crm_webhook_events',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('config_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('event_key', sa.String(length=200), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=True),
    sa.Column('external_id', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('processed', sa.Boolean(), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['config_id'], ['crm_sync_configs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('platform', 'account_id', 'event_key', name='uq_crm_webhook_events_key')
    )
    op.create_index('ix_crm_webhook_events_tenant', 'crm_webhook_events', ['tenant_id', 'received_at'], unique=False)
    op.create_index('ix_crm_webhook_events_unprocessed', 'crm_webhook_events', ['processed', 'received_at'], unique=False)
    op.create_table('crm_webhook_deliveries',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('config_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('event_account_id', sa.String(length=64), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['config_id'], ['crm_sync_configs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_webhook_deliveries_received', 'crm_webhook_deliveries', ['received_at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        # A delivery body is ~25 KB of JSON, written once per webhook request and read once: lz4
        # compresses it for about half the server CPU of the default pglz (on servers built with it).
        op.execute("DO $$ BEGIN ALTER TABLE crm_webhook_deliveries ALTER COLUMN body SET COMPRESSION lz4; "
                   "EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL; END $$")
    op.create_table('crm_automation_runs',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('rule_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('event_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['crm_webhook_events.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['crm_automation_rules.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rule_id', 'event_id', name='uq_crm_automation_runs_once')
    )
    op.create_table('crm_deals',
    sa.Column('name', sa.String(length=500), nullable=True),
    sa.Column('amount', sa.Float(), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('stage', sa.String(length=128), nullable=True),
    sa.Column('pipeline', sa.String(length=128), nullable=True),
    sa.Column('probability', sa.Float(), nullable=True),
    sa.Column('close_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('company_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('contact_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('custom_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('last_change_cause', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['crm_companies.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['crm_contacts.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_deals_tenant_updated', 'crm_deals', ['tenant_id', 'updated_at'], unique=False)
    op.create_table('crm_sync_job_steps',
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('job_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('entity_type', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('pages', sa.Integer(), nullable=False),
    sa.Column('cursor', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['crm_sync_jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'entity_type', 'kind', name='uq_crm_sync_job_steps_unit')
    )
    op.create_index('ix_crm_sync_job_steps_pending', 'crm_sync_job_steps', ['status', 'updated_at'], unique=False)
    op.create_table('crm_activities',
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_minutes', sa.Integer(), nullable=True),
    sa.Column('direction', sa.String(length=32), nullable=True),
    sa.Column('outcome', sa.String(length=64), nullable=True),
    sa.Column('contact_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('company_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('deal_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('custom_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('last_change_cause', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['crm_companies.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['crm_contacts.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['deal_id'], ['crm_deals.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_activities_tenant_updated', 'crm_activities', ['tenant_id', 'updated_at'], unique=False)
    op.create_table('crm_tasks',
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('due_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=True),
    sa.Column('priority', sa.String(length=16), nullable=True),
    sa.Column('task_type', sa.String(length=32), nullable=True),
    sa.Column('contact_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('company_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('deal_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('tenant_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=True),
    sa.Column('custom_fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('last_change_cause', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['company_id'], ['crm_companies.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['contact_id'], ['crm_contacts.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['deal_id'], ['crm_deals.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_crm_tasks_tenant_updated', 'crm_tasks', ['tenant_id', 'updated_at'], unique=False)



def downgrade() -> None:
    """Downgrade schema."""

    op.drop_index('ix_crm_tasks_tenant_updated', table_name='crm_tasks')
    op.drop_table('crm_tasks')
    op.drop_index('ix_crm_activities_tenant_updated', table_name='crm_activities')
    op.drop_table('crm_activities')
    op.drop_index('ix_crm_sync_job_steps_pending', table_name='crm_sync_job_steps')
    op.drop_table('crm_sync_job_steps')
    op.drop_index('ix_crm_deals_tenant_updated', table_name='crm_deals')
    op.drop_table('crm_deals')
    op.drop_table('crm_automation_runs')
    op.drop_index('ix_crm_webhook_deliveries_received', table_name='crm_webhook_deliveries')
    op.drop_table('crm_webhook_deliveries')
    op.drop_index('ix_crm_webhook_events_unprocessed', table_name='crm_webhook_events')
    op.drop_index('ix_crm_webhook_events_tenant', table_name='crm_webhook_events')
    op.drop_table('crm_webhook_events')
    op.drop_index('ix_crm_sync_links_config', table_name='crm_sync_links')
    op.drop_table('crm_sync_links')
    op.drop_index('uq_crm_sync_jobs_one_active', table_name='crm_sync_jobs', postgresql_where=sa.text("status IN ('queued', 'running', 'waiting_quota')"), sqlite_where=sa.text("status IN ('queued', 'running', 'waiting_quota')"))
    op.drop_index('ix_crm_sync_jobs_status', table_name='crm_sync_jobs')
    op.drop_index('ix_crm_sync_jobs_config_created', table_name='crm_sync_jobs')
    op.drop_table('crm_sync_jobs')
    op.drop_table('crm_sync_checkpoints')
    op.drop_index('ix_crm_contacts_tenant_updated', table_name='crm_contacts')
    op.drop_index('ix_crm_contacts_tenant_email', table_name='crm_contacts')
    op.drop_table('crm_contacts')
    op.drop_index('ix_crm_conflict_records_tenant_status', table_name='crm_conflict_records')
    op.drop_index('ix_crm_conflict_records_entity', table_name='crm_conflict_records')
    op.drop_table('crm_conflict_records')
    op.drop_index('ix_crm_sync_configs_due', table_name='crm_sync_configs')
    op.drop_table('crm_sync_configs')
    op.drop_index('ix_crm_companies_tenant_updated', table_name='crm_companies')
    op.drop_index('ix_crm_companies_tenant_domain', table_name='crm_companies')
    op.drop_table('crm_companies')
    op.drop_table('crm_automation_rules')
    op.drop_table('crm_api_keys')
    op.drop_table('tenants')
    op.drop_table('crm_credentials_vault')

