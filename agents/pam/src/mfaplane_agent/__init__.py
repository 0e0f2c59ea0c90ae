"""The Linux SSH agent: a PAM module that asks the mfaplane gateway whether a login needs a code."""
