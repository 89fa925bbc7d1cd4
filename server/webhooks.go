package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
	"github.com/assent/assent/webhook"
)

// withHooks adds to opts a record's webhook events (webhook.RecordEvents),
// committed with the record and whatever else opts queues (a confirmation
// mail), with the subject's unsubscribe link in the payload.
func (s *Server) withHooks(c echo.Context, opts store.AppendOptions) store.AppendOptions {
	base := s.publicURL()
	hooks := s.hooks.RecordOutbox(func(rec store.Record) string {
		if base == "" {
			return ""
		}
		return base + "/u/" + s.store.UnsubscribeToken(rec.Site, rec.Email)
	})
	other := opts.Outbox
	opts.Outbox = func(rec store.Record) ([]store.OutboxItem, error) {
		var items []store.OutboxItem
		if other != nil {
			its, err := other(rec)
			if err != nil {
				return nil, err
			}
			items = its
		}
		its, err := hooks(rec)
		return append(items, its...), err
	}
	return opts
}

type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
	Sites  []string `json:"sites"`
}

func (s *Server) handleCreateWebhook(c echo.Context) error {
	var req webhookRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.Sites) > 100 {
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "sites: at most 100")
	}
	for _, id := range req.Sites {
		if _, err := s.site(c.Request().Context(), id); err != nil {
			return err
		}
	}
	ep, err := s.hooks.Create(c.Request().Context(), req.URL, req.Events, req.Sites)
	var ue *webhook.URLError
	switch {
	case errors.As(err, &ue) && ue.NotAllowed:
		return apiError(http.StatusUnprocessableEntity, "url_not_allowed", ue.Error()+" (the server allows such targets only with --webhook-allow-private)")
	case errors.As(err, &ue):
		return apiError(http.StatusUnprocessableEntity, "invalid_field", ue.Error())
	case errors.Is(err, webhook.ErrUnknownEvent), errors.Is(err, webhook.ErrNoEvents):
		return apiError(http.StatusUnprocessableEntity, "invalid_field", "events: "+err.Error())
	case err != nil:
		return err
	}
	if err := s.audit(c, "webhook_create", fmt.Sprintf("webhook %s events %v", ep.ID, ep.Events)); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, ep)
}

func (s *Server) handleListWebhooks(c echo.Context) error {
	eps, err := s.hooks.List(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, eps)
}

func (s *Server) handleDeleteWebhook(c echo.Context) error {
	id := c.Param("id")
	if err := s.hooks.Delete(c.Request().Context(), id); err != nil {
		return webhookError(err, id)
	}
	if err := s.audit(c, "webhook_delete", "webhook "+truncate(id, 64)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) handleTestWebhook(c echo.Context) error {
	id := c.Param("id")
	d, err := s.hooks.Test(c.Request().Context(), id)
	if err != nil {
		return webhookError(err, id)
	}
	return c.JSON(http.StatusAccepted, d)
}

// handleWebhookDeliveries lists an endpoint's deliveries, newest first;
// query limit (1–500, default 100).
func (s *Server) handleWebhookDeliveries(c echo.Context) error {
	id := c.Param("id")
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return apiError(http.StatusUnprocessableEntity, "invalid_field", "limit: want a number from 1 to 500")
		}
		limit = n
	}
	ds, err := s.hooks.Deliveries(c.Request().Context(), id, limit)
	if err != nil {
		return webhookError(err, id)
	}
	return c.JSON(http.StatusOK, ds)
}

// handleRetryDelivery queues a failed delivery again, due now: 202 with
// the delivery; 409 not_failed for one that is pending or delivered.
func (s *Server) handleRetryDelivery(c echo.Context) error {
	id, did := c.Param("id"), c.Param("delivery")
	d, err := s.hooks.Retry(c.Request().Context(), id, did)
	var ve *store.ValidationError
	switch {
	case errors.Is(err, webhook.ErrNotFailed):
		return apiError(http.StatusConflict, "not_failed", err.Error())
	case errors.As(err, &ve):
		return apiError(http.StatusConflict, "not_failed", ve.Error())
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, "not_found", fmt.Sprintf("webhook %q has no delivery %q", truncate(id, 64), truncate(did, 64)))
	case err != nil:
		return err
	}
	if err := s.audit(c, "webhook_retry", "webhook "+truncate(id, 64)+" delivery "+d.ID); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, d)
}

func webhookError(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return apiError(http.StatusNotFound, "not_found", fmt.Sprintf("no webhook %q", truncate(id, 64)))
	}
	return err
}
