package models

import (
	"strconv"
	"strings"
)

// Topic names what a subscriber follows: "stations" (every station),
// "station:42" (one station) or "user:7" (one user's private events).
// Outbox rows carry a station or user topic; "stations" is the aggregate.
type Topic string

// TopicStations is the aggregate topic of every station's events.
const TopicStations Topic = "stations"

// StationTopic is the topic of one station.
func StationTopic(id int64) Topic { return Topic("station:" + strconv.FormatInt(id, 10)) }

// UserTopic is the private topic of one user.
func UserTopic(id int64) Topic { return Topic("user:" + strconv.FormatInt(id, 10)) }

// StationID returns the station of a "station:N" topic.
func (t Topic) StationID() (int64, bool) { return t.idAfter("station:") }

// UserID returns the user of a "user:N" topic.
func (t Topic) UserID() (int64, bool) { return t.idAfter("user:") }

// IsPublic reports whether anyone may follow t.
func (t Topic) IsPublic() bool {
	if t == TopicStations {
		return true
	}
	_, ok := t.StationID()
	return ok
}

// Channels are the topics an event of topic t is delivered on: a station's
// events go to the station and to the aggregate.
func (t Topic) Channels() []Topic {
	if _, ok := t.StationID(); ok {
		return []Topic{t, TopicStations}
	}
	return []Topic{t}
}

func (t Topic) idAfter(prefix string) (int64, bool) {
	s, ok := strings.CutPrefix(string(t), prefix)
	if !ok || s == "" || s[0] == '0' || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// Valid reports whether t is a well-formed topic.
func (t Topic) Valid() bool {
	if t == TopicStations {
		return true
	}
	_, s := t.StationID()
	_, u := t.UserID()
	return s || u
}
