package notify

import (
	"time"

	"github.com/assetgen/assetgen/shared/ledger"
)

// EventBatchFinished is the type of the webhook sent when a batch finishes.
const EventBatchFinished = "batch.finished"

// Event is the JSON body of a completion webhook (json.Marshal it and pass
// the bytes to Deliver with the same delivery id).
type Event struct {
	Type       string `json:"type"`       // EventBatchFinished
	DeliveryID string `json:"deliveryId"` // the X-Assetgen-Delivery header's value
	BatchID    string `json:"batchId"`
	// UserID is the batch owner's user id: a receiver serving several users
	// of one deployment checks the event is for one of its own.
	UserID     string         `json:"userId"`
	RunMode    string         `json:"runMode"`
	Model      string         `json:"model"`
	CreatedAt  time.Time      `json:"createdAt"`
	FinishedAt time.Time      `json:"finishedAt"`
	Summary    ledger.Summary `json:"summary"` // status done|failed|cancelled, row and variant counts, cost
	Rows       []EventRow     `json:"rows"`
}

// EventRow is one batch row in an Event.
type EventRow struct {
	Index  int             `json:"index"`
	ID     string          `json:"id,omitempty"` // the client's id, when it sent one
	Prompt string          `json:"prompt"`
	Status ledger.Status   `json:"status"`
	Links  []string        `json:"links"`           // stable links of the done variants, in order
	Error  *ledger.Failure `json:"error,omitempty"` // the row's error, else its first failed variant's
}

// NewEvent builds the completion webhook of a finished batch: the same rows,
// links and error codes as Rows, as JSON. It is pure.
func NewEvent(deliveryID string, final ledger.Final, m *ledger.Manifest, link func(row, variant int) string) Event {
	state := rowStates(final)
	e := Event{
		Type:       EventBatchFinished,
		DeliveryID: deliveryID,
		BatchID:    m.BatchID,
		UserID:     m.Owner,
		RunMode:    string(m.RunMode),
		Model:      m.Model,
		CreatedAt:  m.CreatedAt,
		FinishedAt: final.FinishedAt,
		Summary:    final.Summary,
		Rows:       make([]EventRow, 0, len(m.Rows)),
	}
	for _, mr := range m.Rows {
		r := stateOf(state, mr)
		er := EventRow{Index: mr.Index, ID: mr.ID, Prompt: mr.Prompt, Status: r.Status, Links: links(r, link)}
		if er.Links == nil {
			er.Links = []string{}
		}
		if f := rowError(r); f != nil {
			c := *f
			er.Error = &c
		}
		e.Rows = append(e.Rows, er)
	}
	return e
}
