// Command caddy is Caddy with its standard modules and mqtt_gateway: the
// same binary `xcaddy build --with github.com/caddy-mqtt/mqttgateway`
// produces.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-mqtt/mqttgateway"
)

func main() {
	caddycmd.Main()
}
