// A client-started close never shows the client an error: with amqp091-go, Dial, NotifyClose and
// Close, 100 times, and every close is clean (Close returns nil, NotifyClose is closed without an
// error). Warren used to end its side of the stream right after close-ok, and the client's reader
// took that for Exception (501) "EOF" in most of these closes. Run by
// tests/integration/test_go_client.py with the broker's URL in AMQP_URL.
package closeloop

import (
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const iterations = 100

func brokerURL(t *testing.T) string {
	url := os.Getenv("AMQP_URL")
	if url == "" {
		t.Fatal("AMQP_URL is not set")
	}
	return url
}

// closeCleanly closes c and reports whether Close and NotifyClose saw an error.
func closeCleanly(t *testing.T, i int, c *amqp.Connection, notified chan *amqp.Error) bool {
	clean := true
	if err := c.Close(); err != nil {
		t.Errorf("close %d: Close returned %v", i, err)
		clean = false
	}
	select {
	case e, open := <-notified:
		if open && e != nil {
			t.Errorf("close %d: NotifyClose reported %v", i, e)
			clean = false
		}
	case <-time.After(5 * time.Second):
		t.Errorf("close %d: NotifyClose was neither closed nor told within 5 s", i)
		clean = false
	}
	return clean
}

func TestDialNotifyCloseClose(t *testing.T) {
	url := brokerURL(t)
	failed := 0
	for i := 0; i < iterations; i++ {
		c, err := amqp.Dial(url)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		notified := c.NotifyClose(make(chan *amqp.Error, 1))
		if !closeCleanly(t, i, c, notified) {
			failed++
		}
	}
	t.Logf("%d of %d closes reported an error", failed, iterations)
}

// The same with a channel, an exclusive queue and a consumer open at the close.
func TestCloseWithConsumer(t *testing.T) {
	url := brokerURL(t)
	failed := 0
	for i := 0; i < iterations; i++ {
		c, err := amqp.Dial(url)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		notified := c.NotifyClose(make(chan *amqp.Error, 1))
		ch, err := c.Channel()
		if err != nil {
			t.Fatalf("channel %d: %v", i, err)
		}
		// The same name each time: the previous connection's exclusive queue is gone with its close-ok.
		q, err := ch.QueueDeclare("closeloop", false, false, true, false, nil)
		if err != nil {
			t.Fatalf("queue.declare %d: %v", i, err)
		}
		if _, err := ch.Consume(q.Name, "", true, false, false, false, nil); err != nil {
			t.Fatalf("basic.consume %d: %v", i, err)
		}
		if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if !closeCleanly(t, i, c, notified) {
			failed++
		}
	}
	t.Logf("%d of %d closes reported an error", failed, iterations)
}
