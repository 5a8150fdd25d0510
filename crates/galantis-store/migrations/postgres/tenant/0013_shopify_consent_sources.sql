-- Shopify API 2025-01 split consent into one topic per channel (issue 13).
-- Email consent is kept for display only (it never drives WhatsApp sends);
-- whatsapp_consent_updated_at marks a contact whose WhatsApp consent Shopify
-- has told us about: from then on it, not SMS consent, drives
-- marketing_state (ADR 0018).
ALTER TABLE contacts ADD COLUMN email_marketing_state TEXT;
ALTER TABLE contacts ADD COLUMN email_consent_updated_at BIGINT;
ALTER TABLE contacts ADD COLUMN whatsapp_consent_updated_at BIGINT;
