package workflows

// ReminderInterval exposes reminderInterval to the external tests.
var ReminderInterval = reminderInterval
