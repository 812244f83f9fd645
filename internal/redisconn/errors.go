package redisconn

import (
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/pipeline"
)

// Classify gives a Redis error the code and class the runner's retry
// policy reads:
//
//   - a server error (go-redis's redis.Error) is wrapped with pipeline.WithCode
//     and its first word as code: "WRONGTYPE", "OOM", "READONLY", "ERR"...;
//   - of those, the ones retrying cannot fix are also pipeline.Permanent:
//     WRONGTYPE, ERR (syntax, arguments, limits; but not "ERR max number of
//     clients reached"), EXECABORT, the auth errors NOAUTH, WRONGPASS and
//     NOPERM, and the cluster redirections MOVED, ASK and CROSSSLOT (a
//     single-node client cannot follow them);
//   - everything else is transient: OOM, READONLY, LOADING, BUSY, TRYAGAIN,
//     CLUSTERDOWN, MASTERDOWN, MISCONF, NOSCRIPT and unknown words, and
//     network, timeout and pool errors, which are returned as they are.
//
// A nil error stays nil.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return err
	}
	msg := rerr.Error()
	code, _, _ := strings.Cut(msg, " ")
	if code == "" {
		return err
	}
	coded := pipeline.WithCode(code, err)
	if permanentCode(code, msg) {
		return pipeline.Permanent(coded)
	}
	return coded
}

func permanentCode(code, msg string) bool {
	switch code {
	case "WRONGTYPE", "EXECABORT", "NOAUTH", "WRONGPASS", "NOPERM", "MOVED", "ASK", "CROSSSLOT":
		return true
	case "ERR":
		return !strings.HasPrefix(msg, "ERR max number of clients")
	}
	return false
}
