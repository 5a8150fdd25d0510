-- What Meta tells us beyond statuses and template approval (issue 13):
-- template quality, category changes and edited components; a rejection's
-- details; what a message cost and under which conversation; a number's
-- messaging limit.
ALTER TABLE templates ADD COLUMN quality_score TEXT;
ALTER TABLE templates ADD COLUMN rejection_info JSONB;
ALTER TABLE templates ADD COLUMN previous_category TEXT;
-- Meta announces a recategorisation a day ahead: kept until it happens.
ALTER TABLE templates ADD COLUMN upcoming_category TEXT;
ALTER TABLE templates ADD COLUMN upcoming_category_at BIGINT;
ALTER TABLE templates ADD COLUMN meta_components JSONB;

ALTER TABLE messages ADD COLUMN pricing_billable BOOLEAN;
ALTER TABLE messages ADD COLUMN pricing_category TEXT;
ALTER TABLE messages ADD COLUMN pricing_model TEXT;
ALTER TABLE messages ADD COLUMN meta_conversation_id TEXT;
ALTER TABLE messages ADD COLUMN conversation_origin TEXT;
ALTER TABLE messages ADD COLUMN conversation_expires_at BIGINT;

ALTER TABLE whatsapp_numbers ADD COLUMN messaging_limit TEXT;
ALTER TABLE whatsapp_numbers ADD COLUMN quality_event TEXT;
