//! Late events of closed windows into a corrections topic.
