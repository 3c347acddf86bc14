// Starts Swagger UI on this origin's OpenAPI document. A file of its own, not an inline script: the
// docs page runs under the same Content-Security-Policy as everything else (script-src 'self').
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
});
