"""One router per resource family of the BentoCloud API."""
