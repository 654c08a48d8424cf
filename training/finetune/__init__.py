"""Cox fine-tuning of the pretrained network on a survival cohort."""
