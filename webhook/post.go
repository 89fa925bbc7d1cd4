package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/assent/assent/store"
)

// userAgent names the sender to receivers.
const userAgent = "Assent-Webhooks/1"

// post sends one signed delivery and says how it went: any 2xx within
// Timeout is delivered; anything else is a failure with its status code or
// error.
func (s *Service) post(ctx context.Context, ep store.WebhookEndpoint, p payload) store.Attempt {
	ts := time.Now().Unix()
	sig, err := Sign(ep.Secret, p.EventID, ts, p.Body)
	if err != nil {
		return store.Attempt{Err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(p.Body))
	if err != nil {
		return store.Attempt{Err: err.Error()}
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", userAgent)
	h.Set("webhook-id", p.EventID)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", sig)
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is on the endpoint already
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return store.Attempt{Err: fmt.Sprintf("no answer within %s", Timeout)}
		}
		return store.Attempt{Err: err.Error()}
	}
	// Read a little so the connection can be reused; the body is not kept.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := "HTTP " + strconv.Itoa(resp.StatusCode)
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			msg += " (redirects are not followed)"
		}
		return store.Attempt{Err: msg, Code: resp.StatusCode}
	}
	return store.Attempt{Code: resp.StatusCode}
}
