"""The partner-side kit: what a partner code platform runs to issue codes our gates accept once admitted.

A partner initialises its own home (:class:`~citypass.partner.kit.PartnerHome`: its id, names and a key —
SM2 for GM1 codes, Ed25519 or P-256 for CP1 codes), sends the city its public **descriptor**, and after the
city admits it (``citypass issuer partner add``) mints codes with the platform number the city gave it.
It reads our published trust list (``GET /v1/trust-list``) to verify our codes in turn. See docs/partners.md.
"""
