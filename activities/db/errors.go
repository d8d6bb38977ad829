package db

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// Errors carry no cause: a cause is serialised into workflow history with
// its full text. Messages are built from the driver's text after the
// password has been scrubbed from it.

func nonRetryable(errType, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

// notConfigured: the worker's config cannot be used as it is.
func notConfigured(msg string) error {
	return nonRetryable(activities.ErrDatabaseNotConfigured, msg)
}

func retryable(errType, msg string) error {
	return temporal.NewApplicationError(msg, errType)
}

// newRedactor scrubs the literal password from any text that leaves the
// activity. Drivers do not echo passwords, but a DSN in an error message,
// a dump tool's stderr or a server's log line might. Passwords may be
// short, so only values under 3 bytes are left alone.
func newRedactor() *secrets.Redactor { return secrets.NewRedactor("REDACTED", 3) }

// classify turns a driver error into the step's error: msg says what was
// being done ("connect to backstage_plugin_catalog on 127.0.0.1:5432").
func classify(msg string, err error, red *secrets.Redactor) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	text := red.Clean(fmt.Sprintf("%s: %v", msg, err))
	if errors.Is(err, context.Canceled) {
		return errors.New(text)
	}
	if isUnavailable(err) {
		return retryable(activities.ErrDatabaseUnavailable, text)
	}
	return nonRetryable(activities.ErrDatabaseError, text)
}

// isUnavailable: the server could not be reached or is overloaded or
// starting; a later attempt may succeed.
func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && (dnsErr.IsTemporary || dnsErr.IsTimeout) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		// too_many_connections, cannot_connect_now (starting up),
		// admin_shutdown, crash_shutdown, serialization failures.
		case "53300", "57P03", "57P01", "57P02", "40001", "40P01":
			return true
		}
		return false
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		// ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS, lock wait
		// timeout, deadlock, server shutdown.
		case 1040, 1203, 1205, 1213, 1053:
			return true
		}
		return false
	}
	return errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, net.ErrClosed)
}
