"""cncwear's MQTT bridge: listens where the mills' sensor data already flows (an MQTT broker),
scores it through the API over HTTP, and publishes verdicts where the line's PLCs and HMIs look."""
