"""Message channels.  ``[channels.email] backend`` and ``[channels.phone] backend``
pick one of these by name; the SDKs load only when configured."""

from connectors.registry import Registry

EMAIL_BACKENDS = Registry("email backend", {
    "outbox": "connectors.channels.outbox:OutboxChannel",
    "smtp": "connectors.channels.smtp:SmtpChannel",
    "sendgrid": "connectors.channels.sendgrid:SendGridChannel",
})

PHONE_BACKENDS = Registry("phone backend", {
    "therapist-email": "connectors.channels.call_task:TherapistEmailCallTask",
    "calendar": "connectors.channels.calendar_task:CalendarCallTask",
    "twilio-sms": "connectors.channels.twilio_sms:TwilioSmsChannel",
})
# DESIGN.md also says "twilio"; accept it as another name for the same backend.
PHONE_ALIASES = {"twilio": "twilio-sms"}
