package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/assent/assent/store"
)

// Requests a person makes to an admin by other means (mail, phone, letter):
// withdrawal (objection to direct marketing, Art. 21(3) GDPR) and
// rectification (Art. 16). The store decides the records and writes them
// with the audit entry naming the actor in one transaction.

// rightsError turns a withdrawal's or rectification's error into an API
// error; anything else is the caller's to answer.
func rightsError(err error) error {
	var ve *store.ValidationError
	switch {
	case errors.As(err, &ve):
		return apiError(http.StatusUnprocessableEntity, ve.Code, ve.Error())
	case errors.Is(err, store.ErrSubjectExists):
		return apiError(http.StatusConflict, "subject_exists", "the new address already has records: look it up first; two people cannot be merged by a rectification")
	case errors.Is(err, store.ErrSuppressed):
		return apiError(http.StatusConflict, "suppressed", err.Error()+": an erased address is never used again")
	case errors.Is(err, store.ErrNotFound):
		return apiError(http.StatusNotFound, "not_found", err.Error())
	}
	return err
}

// handleWithdrawSubject records a withdrawal on request: 201 with the
// withdraw records stored.
func (s *Server) handleWithdrawSubject(c echo.Context) error {
	var w store.Withdrawal
	if err := decodeStrict(c, &w); err != nil {
		return err
	}
	recs, err := s.store.WithdrawOnRequest(c.Request().Context(), actorOf(c).auditName(), w, s.withHooks(c, store.AppendOptions{}))
	s.hooks.Wake() // the withdraw records' consent.withdrawn events
	if err != nil {
		return rightsError(err)
	}
	return c.JSON(http.StatusCreated, map[string]any{"records": recs})
}

// handleRectifySubject records a rectification: 201 with the rectify
// records and what proof was kept and why.
func (s *Server) handleRectifySubject(c echo.Context) error {
	var r store.Rectification
	if err := decodeStrict(c, &r); err != nil {
		return err
	}
	recs, err := s.store.Rectify(c.Request().Context(), actorOf(c).auditName(), r, s.withHooks(c, store.AppendOptions{}))
	if err != nil {
		return rightsError(err)
	}
	return c.JSON(http.StatusCreated, map[string]any{"email": recs[0].Email, "new_email": recs[0].NewEmail,
		"records": recs, "kept": "every record made before, with the address submitted then", "reason": store.RectifyNote})
}

// decodeStrict is decodeJSON refusing fields v does not have: a misspelt
// "purpose" must not turn into "every purpose".
func decodeStrict(c echo.Context, v any) error {
	var raw json.RawMessage
	if err := decodeJSON(c, &raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return apiError(http.StatusBadRequest, "invalid_json", te.Field+": wrong type, want "+te.Type.String())
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return apiError(http.StatusUnprocessableEntity, "invalid_field", "unknown field "+strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return apiError(http.StatusBadRequest, "invalid_json", "malformed JSON: "+err.Error())
	}
	return nil
}
