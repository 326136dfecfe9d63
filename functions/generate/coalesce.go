package generate

import "sync"

// coalescer lets the row tasks of one batch that run in this instance at the
// same time share one batch-level update instead of each making it: the
// batch's state.json takes one write per second, so every one of them would
// otherwise wait its turn, holding its task (and the queue's dispatch slot)
// long after its row is final.
type coalescer struct {
	mu   sync.Mutex
	runs map[string]*coalesced
}

// coalesced is one update in progress.
type coalesced struct {
	// again asks the update to run once more when it ends: a caller came
	// while it ran, and needs a run that starts after it came.
	again bool
}

// lead runs update under key unless an update under key is running in this
// instance. Then it leaves the update to that run, which runs it once more
// when it ends (so the update is made again after this caller came), and
// returns nil at once. A run that fails stops there and reports the error to
// its own caller, whose task is retried and makes the update then: a caller
// that left the update to it is still covered.
func (c *coalescer) lead(key string, update func() error) error {
	c.mu.Lock()
	if r := c.runs[key]; r != nil {
		r.again = true
		c.mu.Unlock()
		return nil
	}
	if c.runs == nil {
		c.runs = map[string]*coalesced{}
	}
	r := &coalesced{}
	c.runs[key] = r
	c.mu.Unlock()
	for {
		err := update()
		c.mu.Lock()
		if err != nil || !r.again {
			delete(c.runs, key)
			c.mu.Unlock()
			return err
		}
		r.again = false
		c.mu.Unlock()
	}
}

// join runs update under key unless an update under key is running in this
// instance, in which case it returns at once: for an update that any one run
// makes for all (the batch started).
func (c *coalescer) join(key string, update func()) {
	c.mu.Lock()
	if c.runs[key] != nil {
		c.mu.Unlock()
		return
	}
	if c.runs == nil {
		c.runs = map[string]*coalesced{}
	}
	c.runs[key] = &coalesced{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.runs, key)
		c.mu.Unlock()
	}()
	update()
}
