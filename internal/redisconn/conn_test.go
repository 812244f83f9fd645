package redisconn

import (
	"testing"
	"time"

	"github.com/tracepipe/tracepipe/config"
)

func TestOptions(t *testing.T) {
	o := Options(config.Redis{Addr: "cache.example:6380", Username: "u", Password: config.NewSecret("p"), DB: 3, TLS: true, Timeout: 7 * time.Second})
	if o.Addr != "cache.example:6380" || o.Username != "u" || o.Password != "p" || o.DB != 3 {
		t.Fatalf("options %+v", o)
	}
	if o.DialTimeout != 7*time.Second || o.ReadTimeout != 7*time.Second || o.WriteTimeout != 7*time.Second {
		t.Fatalf("timeouts %v %v %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example" || o.TLSConfig.MinVersion < 0x0303 {
		t.Fatalf("TLS %+v", o.TLSConfig)
	}
	if Options(config.Redis{Addr: "127.0.0.1:6379"}).TLSConfig != nil {
		t.Fatal("TLS without tls: true")
	}
}
