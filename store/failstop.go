package store

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Fail-stop: bbolt's state after a failed commit is not trustworthy — a
// failed sync may leave pages on disk that a later sync makes durable, or a
// record stored whose caller was told it failed — so after any failed write
// or sync of the file the ledger acknowledges nothing more until the
// process restarts: every write returns a *FailedError, which wraps
// ErrUnavailable. On restart, what is on disk is the truth and Verify
// checks it.

// failState is a Store's fail-stop state.
type failState struct {
	mu     sync.Mutex
	cause  error
	onFail []func(error)
}

// FailedError is what writes return once the ledger failed: it names the
// first failure. errors.Is(err, ErrUnavailable) holds.
type FailedError struct{ Cause error }

func (e *FailedError) Error() string {
	return fmt.Sprintf("ledger unavailable: a write or sync of the file failed (%v); it accepts no writes until restarted", e.Cause)
}
func (e *FailedError) Unwrap() []error { return []error{ErrUnavailable, e.Cause} }

// Reason is a short, fixed name of the failure for metrics: the errno
// (EIO, ENOSPC, …) or "other".
func (e *FailedError) Reason() string {
	var errno syscall.Errno
	if errors.As(e.Cause, &errno) {
		switch errno {
		case syscall.EIO:
			return "EIO"
		case syscall.ENOSPC:
			return "ENOSPC"
		case syscall.EDQUOT:
			return "EDQUOT"
		case syscall.EROFS:
			return "EROFS"
		}
		return "errno"
	}
	return "other"
}

// Failed returns nil while the ledger accepts writes, and the
// *FailedError of the first failed write or sync after that.
func (s *Store) Failed() error {
	s.fail.mu.Lock()
	defer s.fail.mu.Unlock()
	if s.fail.cause == nil {
		return nil
	}
	return &FailedError{Cause: s.fail.cause}
}

// OnFail registers fn to be called once, with the *FailedError, when the
// ledger fails (at once if it already has).
func (s *Store) OnFail(fn func(error)) {
	s.fail.mu.Lock()
	cause := s.fail.cause
	if cause == nil {
		s.fail.onFail = append(s.fail.onFail, fn)
	}
	s.fail.mu.Unlock()
	if cause != nil {
		fn(&FailedError{Cause: cause})
	}
}

// failWith puts the ledger in the failed state (the first cause is kept)
// and returns the error writes get from now on.
func (s *Store) failWith(cause error) error {
	s.fail.mu.Lock()
	first := s.fail.cause == nil
	if first {
		s.fail.cause = cause
	}
	fns := s.fail.onFail
	if first {
		s.fail.onFail = nil
	}
	err := &FailedError{Cause: s.fail.cause}
	s.fail.mu.Unlock()
	if first {
		for _, fn := range fns {
			fn(err)
		}
	}
	return err
}

// commitTx commits a write transaction; a failure of the commit (a write,
// sync or growth of the file) fails the ledger.
func (s *Store) commitTx(tx *bolt.Tx) error {
	if err := tx.Commit(); err != nil {
		return s.failWith(err)
	}
	return nil
}

// update is db.Update with fail-stop: refused once the ledger failed, and
// a failed commit fails it. An error of fn rolls back and is returned as is.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	if err := s.Failed(); err != nil {
		return err
	}
	tx, err := s.db.Begin(true)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil {
		return s.failWith(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return s.commitTx(tx)
}

// view is db.View that turns a panic or a memory fault while reading a
// damaged page into ErrCorrupt (see guard), so one bad page fails the
// request that reads it, not the process.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	return guard(func() error { return s.db.View(fn) })
}
