package workflows

// ChangeIDs lists every workflow.GetVersion change id the interpreter has
// ever used, oldest first. Ids are never removed or reused (see "Changing
// the interpreter while runs wait" in the package doc): a run that recorded
// one must find the same GetVersion call when it replays on a newer worker.
// TestChangeIDsAreKept checks this list against the source both ways.
var ChangeIDs = []string{
	resolveLocalChange,      // resolve as a local activity instead of a regular one
	irreversibleWaitChange,  // irreversible step types wait for their outcome when cancelled
	reminderPacingChange,    // reminders past the 200th back off, up to a day apart
	resumeInterruptedChange, // a step its worker's stop interrupted runs again
}
