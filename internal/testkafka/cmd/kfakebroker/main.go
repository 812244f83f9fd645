// Command kfakebroker runs franz-go's kfake, the Kafka-protocol broker of
// the tests, as a process of its own: benchmarks start it (through
// testkafka.StartProcess) so that the broker's CPU is not the benchmark's,
// and can be stated apart, as a real broker's would be.
//
//	kfakebroker -topics spans -partitions 6
//
// It listens on 127.0.0.1 (a free port unless -port says), prints
// "addr 127.0.0.1:PORT" on stdout once it listens, and runs until its stdin
// is closed (the parent died or is done with it) or it gets SIGTERM or
// SIGINT.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	topics := flag.String("topics", "", "comma-separated topics to create")
	parts := flag.Int("partitions", 3, "partitions per topic")
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free one)")
	flag.Parse()

	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("kfakebroker"),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
		}),
		kfake.DefaultNumPartitions(*parts),
	}
	if *topics != "" {
		opts = append(opts, kfake.SeedTopics(int32(*parts), strings.Split(*topics, ",")...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfakebroker:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Printf("addr %s\n", c.ListenAddrs()[0])

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-stop:
	case <-eof:
	}
}
