package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// The admin console page. It needs no token to load; it asks for one and
// sends it in the Authorization header of its own API calls.
const consolePage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Assent admin</title></head><body>
<main><h1>Assent admin</h1>
<form id="login"><label>Admin token <input name="token" type="password" autocomplete="off" required></label> <button>Sign in</button></form>
<pre id="out"></pre></main>
<script src="/admin/console.js"></script></body></html>`

const consoleScript = `document.getElementById('login').addEventListener('submit',async e=>{e.preventDefault();
const t=new FormData(e.target).get('token');sessionStorage.setItem('assent-token',t);
const r=await fetch('/v1/admin/sites',{headers:{Authorization:'Bearer '+t}});
document.getElementById('out').textContent=JSON.stringify(await r.json(),null,2)})`

func (s *Server) handleConsole(c echo.Context) error {
	c.Response().Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-src 'self'")
	return c.HTML(http.StatusOK, consolePage)
}

func (s *Server) handleConsoleScript(c echo.Context) error {
	return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", []byte(consoleScript))
}
