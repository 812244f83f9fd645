package pipeline

import "errors"

// ErrPermanent marks an error that retrying cannot fix (a message too
// large, a rejected schema, a 4xx): the record goes to the DLQ at once, as
// sink_permanent. Test with errors.Is.
var ErrPermanent = errors.New("permanent")

// Permanent wraps err so that errors.Is(err, ErrPermanent) holds; the
// message is err's.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

type permanentError struct{ err error }

func (p permanentError) Error() string        { return p.err.Error() }
func (p permanentError) Unwrap() []error      { return []error{p.err, ErrPermanent} }
func (p permanentError) Is(target error) bool { return target == ErrPermanent }

// Coded is an error with a short stable code (e.g. "message_too_large",
// "broker_unavailable", "WRONGTYPE"), by which config can override its
// classification (retry.codes). Sinks wrap their errors to give one.
type Coded interface {
	error
	Code() string
}

// WithCode wraps err with a code.
func WithCode(code string, err error) error {
	if err == nil {
		return nil
	}
	return codedError{code, err}
}

type codedError struct {
	code string
	err  error
}

func (c codedError) Error() string { return c.err.Error() }
func (c codedError) Unwrap() error { return c.err }
func (c codedError) Code() string  { return c.code }
