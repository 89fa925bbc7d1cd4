-- Webhook endpoints (store/webhook.go), with their signing secrets.
CREATE TABLE webhooks (
    id            text PRIMARY KEY,
    endpoint      bytea NOT NULL, -- store.WebhookEndpoint as JSON
    created_at_ns bigint NOT NULL
);
