package postgres

import (
	"context"
	"fmt"

	"github.com/assent/assent/store"
)

// WithdrawOnRequest is not yet written for PostgreSQL: it answers
// store.ErrNotSupported (501), never a half-done withdrawal.
func (db *DB) WithdrawOnRequest(ctx context.Context, actor string, w store.Withdrawal, opts store.AppendOptions) ([]store.Record, error) {
	return nil, fmt.Errorf("withdrawal on request: %w yet (PostgreSQL)", store.ErrNotSupported)
}

// Rectify is not yet written for PostgreSQL: it answers
// store.ErrNotSupported (501).
func (db *DB) Rectify(ctx context.Context, actor string, r store.Rectification, opts store.AppendOptions) ([]store.Record, error) {
	return nil, fmt.Errorf("rectification: %w yet (PostgreSQL)", store.ErrNotSupported)
}
