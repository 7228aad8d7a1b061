import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { createChatClient } from './chat';
import { ChatContext } from './hooks/useChat';
import './styles.css';

const client = createChatClient();
client.start();

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <ChatContext.Provider value={client}>
      <App />
    </ChatContext.Provider>
  </StrictMode>,
);
