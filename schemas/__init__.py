"""The event contract and table specs (versioned). See schemas/events/v1.yaml."""
