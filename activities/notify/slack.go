package notify

import (
	"fmt"
	"sort"
	"strings"
)

// SlackMessage is the part of Slack's incoming-webhook format we send: a
// plain-text fallback (shown in notifications and by clients without
// blocks) and Block Kit blocks.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is a header, section or context block.
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a plain_text or mrkdwn text object.
type SlackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// Slack's limits: longer texts make the whole message fail with
// invalid_blocks, which would lose the notification over a long title.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
	slackFieldsMax  = 10
)

var eventEmoji = map[string]string{
	"gate_opened":   ":raised_hand:",
	"gate_reminder": ":alarm_clock:",
	"run_failed":    ":x:",
	"run_succeeded": ":white_check_mark:",
	"run_rejected":  ":no_entry:",
	"custom":        ":information_source:",
}

func slackPayload(in SendInput) SlackMessage {
	title := in.Title
	if title == "" {
		title = strings.ReplaceAll(in.Event, "_", " ")
	}
	header := truncate(eventEmoji[in.Event]+" "+title, slackHeaderMax)
	msg := SlackMessage{Text: truncate(title, slackSectionMax)}
	if in.Text != "" {
		msg.Text = truncate(title+": "+in.Text, slackSectionMax)
	}
	msg.Blocks = append(msg.Blocks, SlackBlock{Type: "header", Text: &SlackText{Type: "plain_text", Text: header, Emoji: true}})
	if in.Text != "" {
		msg.Blocks = append(msg.Blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: truncate(escape(in.Text), slackSectionMax)}})
	}
	if len(in.Fields) > 0 {
		keys := make([]string, 0, len(in.Fields))
		for k := range in.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var fields []SlackText
		for _, k := range keys {
			if len(fields) == slackFieldsMax {
				break
			}
			fields = append(fields, SlackText{Type: "mrkdwn",
				Text: truncate(fmt.Sprintf("*%s*\n%s", escape(k), escape(fmt.Sprint(in.Fields[k]))), slackFieldMax)})
		}
		msg.Blocks = append(msg.Blocks, SlackBlock{Type: "section", Fields: fields})
	}
	var ctx []string
	if in.Run != "" {
		ctx = append(ctx, "Run `"+escape(in.Run)+"`")
	}
	if in.Gate != "" {
		ctx = append(ctx, "gate `"+escape(in.Gate)+"`")
	}
	if len(in.Approvers) > 0 {
		ctx = append(ctx, "approvers: "+escape(strings.Join(in.Approvers, ", ")))
	}
	ctx = append(ctx, "event "+in.Event)
	msg.Blocks = append(msg.Blocks, SlackBlock{Type: "context", Elements: []SlackText{{Type: "mrkdwn", Text: truncate(strings.Join(ctx, " · "), slackSectionMax)}}})
	return msg
}

// escape applies Slack's mrkdwn escaping: &, < and > are control
// characters (links, mentions) and must not come from run data.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
