"""The portal: the register in the browser (staff console and privacy portal); owns no personal data."""
