// Package redisconn is the Redis connection code shared by the Redis
// sinks, the Redis DLQ backend and the Redis sources to come, so that none
// of them imports another: the go-redis client options built from a
// config.Redis, the classification of Redis errors into codes, permanent or
// transient (Classify), and the routing of go-redis's own log lines
// (RouteLibraryLogs).
package redisconn

import (
	"crypto/tls"
	"net"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tracepipe/tracepipe/config"
)

// Options returns the go-redis options of a configured connection: address,
// credentials, database, TLS 1.2+ (verifying the address's host name) and
// c.Timeout for dial, read and write. Commands also honour their context's
// deadline.
func Options(c config.Redis) *goredis.Options {
	o := &goredis.Options{
		Addr:                  c.Addr,
		Username:              c.Username,
		Password:              c.Password.Reveal(),
		DB:                    c.DB,
		DialTimeout:           c.Timeout,
		ReadTimeout:           c.Timeout,
		WriteTimeout:          c.Timeout,
		ContextTimeoutEnabled: true,
	}
	if c.TLS {
		host, _, err := net.SplitHostPort(c.Addr)
		if err != nil {
			host = c.Addr
		}
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	return o
}
